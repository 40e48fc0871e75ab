//! What one exchange with one server needs: the query's id and question, whether an answer
//! matches them, the id and the name's case set on the way out. No I/O, no health, no metrics:
//! the sockets exchange, the pool decides what a result means.

use crate::wire::{self, HEADER_LEN, MAX_MESSAGE, flag};

/// What the pool needs to know about a client query, read once from its bytes (the id is the
/// client's business: answers are written for it with its own).
#[derive(Debug)]
pub(crate) struct QueryInfo<'a> {
    /// The question section (name, type, class) an answer must repeat.
    pub(crate) question: &'a [u8],
}

impl<'a> QueryInfo<'a> {
    /// Reads a client query; the error says why it cannot be forwarded.
    pub(crate) fn parse(query: &'a [u8]) -> Result<Self, &'static str> {
        if query.len() < HEADER_LEN {
            return Err("shorter than a DNS header");
        }
        if query.len() > MAX_MESSAGE {
            return Err("longer than a DNS message can be");
        }
        if wire::flags(query) & flag::QR != 0 {
            return Err("it is a response, not a query");
        }
        if wire::counts(query)[0] != 1 {
            return Err("it does not have exactly one question");
        }
        let end = wire::skip_question(query, HEADER_LEN).map_err(|_| "its question is malformed")?;
        Ok(QueryInfo {
            question: &query[HEADER_LEN..end],
        })
    }
}

/// Whether `answer` answers the query we sent with `id` and `question`: same id, QR set, one
/// question, the same name (case-insensitively: servers may or may not keep 0x20 case), type,
/// class.
pub(crate) fn answers(question: &[u8], answer: &[u8], id: u16) -> bool {
    let Some(header) = answer.get(..HEADER_LEN) else {
        return false;
    };
    if u16::from_be_bytes([header[0], header[1]]) != id
        || wire::flags(answer) & flag::QR == 0
        || wire::counts(answer)[0] != 1
        || question.len() < 4
    {
        return false;
    }
    let Some(theirs) = answer.get(HEADER_LEN..HEADER_LEN + question.len()) else {
        return false;
    };
    // Name bytes compare without case (label lengths are below 64, so unaffected); type and
    // class exactly, since 0x41 and 0x61 are different types.
    let (name, fixed) = question.split_at(question.len() - 4);
    let (their_name, their_fixed) = theirs.split_at(name.len());
    name.eq_ignore_ascii_case(their_name) && fixed == their_fixed
}

/// The question section of `query`, `question_len` bytes after the header (empty if the
/// message is shorter: the caller parsed it, so it is not).
pub(crate) fn question_of(query: &[u8], question_len: usize) -> &[u8] {
    query.get(HEADER_LEN..HEADER_LEN + question_len).unwrap_or_default()
}

/// Sets the id of a message in place.
pub(crate) fn set_id(message: &mut [u8], id: u16) {
    if let Some(field) = message.get_mut(..2) {
        field.copy_from_slice(&id.to_be_bytes());
    }
}

/// Upper- or lowercases each letter of the name in `question` (a question section: labels, then
/// type and class) at random, one random bit per letter (0x20, draft-vixie-dnsext-dns0x20): a
/// spoofed answer must repeat the case too. Length bytes, digits and the type and class are left
/// alone.
pub(crate) fn randomize_case(question: &mut [u8]) {
    let mut bits = 0u64;
    let mut left = 0;
    let mut at = 0;
    while let Some(&len) = question.get(at) {
        if len == 0 || len > 63 {
            break;
        }
        let end = (at + 1 + usize::from(len)).min(question.len());
        for byte in &mut question[at + 1..end] {
            if !byte.is_ascii_alphabetic() {
                continue;
            }
            if left == 0 {
                bits = rand::random::<u64>();
                left = 64;
            }
            *byte = if bits & 1 == 1 {
                byte.to_ascii_uppercase()
            } else {
                byte.to_ascii_lowercase()
            };
            bits >>= 1;
            left -= 1;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_randomization_changes_letters_only_and_keeps_the_name() {
        let original = b"\x03www\x0bexample-123\x03com\x00\x00\x01\x00\x01".to_vec();
        let mut seen_upper = false;
        for _ in 0..20 {
            let mut question = original.clone();
            randomize_case(&mut question);
            assert!(question.eq_ignore_ascii_case(&original));
            assert_eq!(question[0], 3);
            assert_eq!(&question[question.len() - 5..], b"\x00\x00\x01\x00\x01");
            assert_eq!(&question[13..16], b"123");
            seen_upper |= question.iter().any(u8::is_ascii_uppercase);
        }
        assert!(seen_upper, "letters are randomised");
        // A question that lies about its lengths is left as it is past that point.
        let mut broken = b"\x09ab".to_vec();
        randomize_case(&mut broken);
        assert!(broken.eq_ignore_ascii_case(b"\x09ab"));
    }
}
