//! Resolving a blocked name the way a client would have, through the daemon's own upstreams:
//! an A and an AAAA query, answers followed through their CNAME chain to the final addresses,
//! each with its TTL.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::state::Snapshot;
use crate::upstream::{Sockets, Transport};

/// CNAMEs followed in one answer at most: a chain longer than this is a loop or an attack.
const MAX_CHAIN: usize = 16;
/// Queries for one name and type at most, following chains the upstream left dangling.
const MAX_RESTARTS: usize = 4;

/// Why a name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// The name is not a domain name hickory can encode.
    #[error("not a domain name: {0}")]
    Name(String),
    /// Forwarding failed (no upstream answered, all busy).
    #[error(transparent)]
    Forward(#[from] crate::upstream::ForwardError),
    /// The answer did not decode.
    #[error("the answer does not decode: {0}")]
    Decode(String),
}

/// The query message for `name` and `qtype`, recursion desired, no EDNS: the upstream answers
/// in 512 bytes or truncated, and the pool asks again over TCP.
pub(crate) fn query(name: &str, qtype: RecordType) -> Result<Vec<u8>, ResolveError> {
    let fqdn = Name::from_ascii(name)
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| ResolveError::Name(format!("{name}: {e}")))?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(fqdn, qtype));
    message.to_vec().map_err(|e| ResolveError::Name(format!("{name}: {e}")))
}

/// What one answer says about a name: the addresses of its chain's last name, with their TTLs,
/// or the last name itself when the chain stops at a CNAME without them (an upstream that does
/// not chase the CNAME, as an authoritative server for another zone does not).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// A and AAAA records of the chain's last name.
    pub(crate) found: Vec<(IpAddr, u32)>,
    /// The target of the chain's last CNAME, when no address came with it.
    pub(crate) dangling: Option<String>,
}

/// The addresses an answer gives `name`, with their TTLs: the A and AAAA records of the last
/// name of the CNAME chain that starts at `name` (those of a name outside the chain are ignored:
/// an upstream has no business adding them). Nothing for an error answer.
pub(crate) fn addresses(answer: &[u8], name: &str) -> Result<Answer, ResolveError> {
    let message = Message::from_vec(answer).map_err(|e| ResolveError::Decode(e.to_string()))?;
    if message.metadata.response_code != ResponseCode::NoError {
        return Ok(Answer::default());
    }
    let mut current = Name::from_ascii(name).map_err(|e| ResolveError::Name(format!("{name}: {e}")))?;
    current.set_fqdn(true);
    let mut found = Vec::new();
    let mut moved = false;
    for _ in 0..=MAX_CHAIN {
        let mut next = None;
        for record in &message.answers {
            if record.name != current {
                continue;
            }
            match &record.data {
                RData::A(a) => found.push((IpAddr::V4(a.0), record.ttl)),
                RData::AAAA(aaaa) => found.push((IpAddr::V6(aaaa.0), record.ttl)),
                RData::CNAME(target) => next = Some(target.0.clone()),
                _ => {}
            }
        }
        match next {
            Some(target) if found.is_empty() => {
                current = target;
                moved = true;
            }
            _ => break,
        }
    }
    let dangling = (found.is_empty() && moved).then(|| current.to_ascii());
    Ok(Answer { found, dangling })
}

/// Resolves `name`'s A and AAAA records through `snapshot`'s upstreams on `sockets`, both at once.
/// An answer that fails counts as a failure only when both do: one family is worth adding.
pub(crate) async fn resolve(
    name: &str,
    snapshot: &Arc<Snapshot>,
    sockets: &Sockets,
) -> Result<Vec<(IpAddr, u32)>, ResolveError> {
    let one = |qtype| async move {
        let mut asked = name.to_string();
        // A chain the upstream left dangling is followed by asking for its last name, a few
        // times at most.
        for _ in 0..MAX_RESTARTS {
            let bytes = query(&asked, qtype)?;
            let response = snapshot
                .upstream
                .forward(&bytes, Transport::Udp(sockets), &snapshot.ttl_limits)
                .await?;
            let answer = addresses(response.as_bytes(), &asked)?;
            match answer.dangling {
                Some(target) => asked = target,
                None => return Ok(answer.found),
            }
        }
        Ok(Vec::new())
    };
    let (v4, v6) = tokio::join!(one(RecordType::A), one(RecordType::AAAA));
    match (v4, v6) {
        (Ok(mut v4), Ok(v6)) => {
            v4.extend(v6);
            Ok(v4)
        }
        (Ok(found), Err(e)) | (Err(e), Ok(found)) => {
            tracing::debug!(name, error = %e, "egress: one address family of a blocked name did not resolve");
            Ok(found)
        }
        (Err(e), Err(_)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};

    fn answer(records: Vec<Record>, rcode: ResponseCode) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.message_type = hickory_proto::op::MessageType::Response;
        message.metadata.response_code = rcode;
        message.add_query(Query::query(
            Name::from_ascii("v16.tiktokcdn.com.").unwrap(),
            RecordType::A,
        ));
        message.answers = records;
        message.to_vec().unwrap()
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn the_chain_is_followed_to_its_last_name_and_strays_are_ignored() {
        let records = vec![
            Record::from_rdata(
                name("v16.tiktokcdn.com."),
                300,
                RData::CNAME(CNAME(name("edge.Example.net."))),
            ),
            Record::from_rdata(
                name("edge.example.net."),
                20,
                RData::CNAME(CNAME(name("a1.cdn.example."))),
            ),
            Record::from_rdata(name("a1.cdn.example."), 30, RData::A(A::new(203, 0, 113, 7))),
            Record::from_rdata(
                name("a1.cdn.example."),
                40,
                RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            ),
            Record::from_rdata(name("stray.example."), 30, RData::A(A::new(192, 0, 2, 66))),
        ];
        let found = addresses(&answer(records, ResponseCode::NoError), "v16.tiktokcdn.com").unwrap();
        assert_eq!(found.dangling, None);
        assert_eq!(
            found.found,
            vec![
                ("203.0.113.7".parse().unwrap(), 30),
                ("2001:db8::7".parse().unwrap(), 40)
            ]
        );
    }

    #[test]
    fn an_error_answer_or_a_cname_loop_gives_nothing() {
        assert!(
            addresses(&answer(vec![], ResponseCode::NXDomain), "v16.tiktokcdn.com")
                .unwrap()
                .found
                .is_empty()
        );
        let looped = vec![
            Record::from_rdata(name("v16.tiktokcdn.com."), 300, RData::CNAME(CNAME(name("b.example.")))),
            Record::from_rdata(name("b.example."), 300, RData::CNAME(CNAME(name("v16.tiktokcdn.com.")))),
        ];
        assert!(
            addresses(&answer(looped, ResponseCode::NoError), "v16.tiktokcdn.com")
                .unwrap()
                .found
                .is_empty()
        );
    }

    #[test]
    fn a_chain_that_stops_at_a_cname_names_its_last_target() {
        let records = vec![Record::from_rdata(
            name("v16.tiktokcdn.com."),
            300,
            RData::CNAME(CNAME(name("edge.cdnhost.test."))),
        )];
        let found = addresses(&answer(records, ResponseCode::NoError), "v16.tiktokcdn.com").unwrap();
        assert!(found.found.is_empty());
        assert_eq!(found.dangling.as_deref(), Some("edge.cdnhost.test."));
    }

    #[test]
    fn a_query_asks_for_recursion() {
        let bytes = query("v16.tiktokcdn.com", RecordType::AAAA).unwrap();
        let message = Message::from_vec(&bytes).unwrap();
        assert!(message.metadata.recursion_desired);
        assert_eq!(message.queries[0].query_type(), RecordType::AAAA);
        assert_eq!(message.queries[0].name(), &name("v16.tiktokcdn.com."));
    }
}
