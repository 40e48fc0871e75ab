//! Small counts hidden, and the totals that would give them away.
//!
//! Primary suppression hides every count from 1 to `min_count - 1` (0 is shown: it singles out
//! no one). Secondary suppression then walks every sum the report shows (a day's total over the
//! policies, a policy's total over the days and over its modes, a list's total, the grand total
//! over days, policies, lists, apexes and protocols): a sum with exactly one hidden term (the
//! total counting as a term) would give that term away by subtraction, so another non-zero term
//! is hidden too: the one whose hiding leaves the fewest other sums with a single hidden term (so
//! that one small count does not hide half the report), the smallest of those; and the walk
//! repeats until every sum hides none or at least two.

/// The counts of a report, each with whether it is hidden, and the sums between them.
#[derive(Default)]
pub(super) struct Ledger {
    values: Vec<u64>,
    hidden: Vec<bool>,
    /// `(total, parts)`: the entry `total` is the sum of the entries `parts`.
    sums: Vec<(usize, Vec<usize>)>,
    /// The threshold [`Ledger::suppress`] applied.
    min_count: u64,
}

/// A count as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shown {
    /// The count.
    Count(u64),
    /// From 1 to the threshold less one: shown as "< N".
    Small,
    /// Not small, but hidden so that no total gives a small count away: shown as such, never
    /// as "< N", which it is not.
    Withheld,
}

impl Shown {
    /// The count, when shown.
    pub(super) fn value(self) -> Option<u64> {
        match self {
            Shown::Count(n) => Some(n),
            Shown::Small | Shown::Withheld => None,
        }
    }
}

impl Ledger {
    /// Adds a count; returns its entry.
    pub(super) fn entry(&mut self, value: u64) -> usize {
        self.values.push(value);
        self.hidden.push(false);
        self.values.len() - 1
    }

    /// States that `total` is the sum of `parts`, as the report shows them.
    pub(super) fn sum(&mut self, total: usize, parts: Vec<usize>) {
        debug_assert_eq!(
            self.values[total],
            parts.iter().map(|&p| self.values[p]).sum::<u64>(),
            "a sum of the report must add up"
        );
        self.sums.push((total, parts));
    }

    /// Hides what must be hidden, for a threshold of `min_count`.
    pub(super) fn suppress(&mut self, min_count: u64) {
        self.min_count = min_count;
        for (value, hidden) in self.values.iter().zip(self.hidden.iter_mut()) {
            *hidden = *value > 0 && *value < min_count;
        }
        // The sums each entry is a term of, to weigh what hiding it does elsewhere.
        let mut member_of = vec![Vec::new(); self.values.len()];
        for (i, (total, parts)) in self.sums.iter().enumerate() {
            for &t in std::iter::once(total).chain(parts) {
                member_of[t].push(i);
            }
        }
        loop {
            let mut changed = false;
            for i in 0..self.sums.len() {
                if self.hidden_in(i) != 1 {
                    continue;
                }
                // Of the other terms, hide the one that leaves the fewest sums with a single
                // hidden term (it may mend others at once, rather than start a cascade), and of
                // those the smallest, so that as little as possible goes.
                let (total, parts) = &self.sums[i];
                let cost = |t: usize| -> i64 {
                    member_of[t]
                        .iter()
                        .map(|&s| match self.hidden_in(s) {
                            0 => 1,
                            1 => -1,
                            _ => 0,
                        })
                        .sum()
                };
                let chosen = std::iter::once(*total)
                    .chain(parts.iter().copied())
                    .filter(|&t| !self.hidden[t] && self.values[t] > 0)
                    .min_by_key(|&t| (cost(t), self.values[t]));
                if let Some(t) = chosen {
                    self.hidden[t] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// How many terms of sum `i` (its total included) are hidden.
    fn hidden_in(&self, i: usize) -> usize {
        let (total, parts) = &self.sums[i];
        std::iter::once(total).chain(parts).filter(|&&t| self.hidden[t]).count()
    }

    /// An entry as shown.
    pub(super) fn shown(&self, entry: usize) -> Shown {
        match (self.hidden[entry], self.values[entry]) {
            (false, n) => Shown::Count(n),
            (true, n) if n < self.min_count => Shown::Small,
            (true, _) => Shown::Withheld,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `rows`, with row totals, column totals and the grand total, as the daily chart
    /// has; returns (cells, row totals, column totals, grand total) entries.
    fn table(ledger: &mut Ledger, rows: &[&[u64]]) -> (Vec<Vec<usize>>, Vec<usize>, Vec<usize>, usize) {
        let cells: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| r.iter().map(|&v| ledger.entry(v)).collect())
            .collect();
        let row_totals: Vec<usize> = rows.iter().map(|r| ledger.entry(r.iter().sum())).collect();
        let cols = rows[0].len();
        let col_totals: Vec<usize> = (0..cols)
            .map(|c| ledger.entry(rows.iter().map(|r| r[c]).sum()))
            .collect();
        let grand = ledger.entry(rows.iter().flat_map(|r| r.iter()).sum());
        for (r, row) in cells.iter().enumerate() {
            ledger.sum(row_totals[r], row.clone());
        }
        for c in 0..cols {
            ledger.sum(col_totals[c], cells.iter().map(|row| row[c]).collect());
        }
        ledger.sum(grand, row_totals.clone());
        ledger.sum(grand, col_totals.clone());
        (cells, row_totals, col_totals, grand)
    }

    /// Whether any one sum of the ledger shows all but one of its terms while hiding that one.
    fn recoverable(ledger: &Ledger) -> bool {
        ledger.sums.iter().any(|(total, parts)| {
            std::iter::once(total)
                .chain(parts)
                .filter(|&&t| ledger.hidden[t])
                .count()
                == 1
        })
    }

    #[test]
    fn counts_under_the_threshold_are_hidden_and_zero_is_shown() {
        let mut l = Ledger::default();
        let e: Vec<usize> = [0, 1, 4, 5, 100].iter().map(|&v| l.entry(v)).collect();
        l.suppress(5);
        let shown: Vec<Shown> = e.iter().map(|&i| l.shown(i)).collect();
        assert_eq!(
            shown,
            [
                Shown::Count(0),
                Shown::Small,
                Shown::Small,
                Shown::Count(5),
                Shown::Count(100)
            ]
        );
    }

    #[test]
    fn a_lone_hidden_cell_hides_its_complement_so_totals_do_not_give_it_away() {
        let mut l = Ledger::default();
        // day 1: policy A 3 (hidden), policy B 40; day 2: A 20, B 30.
        let (cells, rows, cols, grand) = table(&mut l, &[&[3, 40], &[20, 30]]);
        l.suppress(5);
        assert_eq!(l.shown(cells[0][0]), Shown::Small);
        assert!(!recoverable(&l), "no sum may hide exactly one term");
        // Day 1's total minus B's would give A's 3: one of them is hidden too; so is one of
        // column A's other terms.
        assert!(l.shown(cells[0][1]) == Shown::Withheld || l.shown(rows[0]) == Shown::Withheld);
        assert!(l.shown(cells[1][0]) == Shown::Withheld || l.shown(cols[0]) == Shown::Withheld);
        assert_eq!(
            l.shown(grand),
            Shown::Count(93),
            "the grand total stays when nothing leaks through it"
        );
    }

    #[test]
    fn a_cell_alone_in_its_row_hides_the_row_total() {
        let mut l = Ledger::default();
        let (cells, rows, _, _) = table(&mut l, &[&[2, 0], &[50, 60]]);
        l.suppress(5);
        assert_eq!(l.shown(cells[0][1]), Shown::Count(0));
        assert_eq!(l.shown(rows[0]), Shown::Small, "2 + 0: the total is the hidden cell");
        assert!(!recoverable(&l));
    }

    #[test]
    fn many_random_tables_never_leave_a_sum_with_one_hidden_term() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % 12
        };
        for _ in 0..500 {
            let rows: Vec<Vec<u64>> = (0..4).map(|_| (0..3).map(|_| next()).collect()).collect();
            let refs: Vec<&[u64]> = rows.iter().map(Vec::as_slice).collect();
            let mut l = Ledger::default();
            table(&mut l, &refs);
            l.suppress(5);
            assert!(!recoverable(&l), "{rows:?}");
        }
    }
}
