//! Slices of a manifest for batch schedulers, and merging their reports.

use super::report::Report;
use crate::{Error, Result};

/// The `index`-th (1-based) of `count` interleaved slices: entries `index − 1`,
/// `index − 1 + count`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1..=count.
    pub index: usize,
    /// Number of slices.
    pub count: usize,
}

impl Shard {
    /// Parse `i/n` with 1 ≤ i ≤ n.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || {
            Error::InvalidArgument(format!(
                "shard {s:?}: expected i/n with 1 <= i <= n, e.g. 2/8"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether manifest entry `position` (0-based) belongs to this shard.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// `i/n`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// Merge shard reports into the report of the whole manifest. The settings must agree, and
/// together the shards must cover every manifest entry exactly once.
pub fn merge(reports: Vec<Report>) -> Result<Report> {
    let first = reports
        .first()
        .ok_or_else(|| Error::InvalidArgument("nothing to merge".into()))?;
    let settings = first.settings.clone();
    if let Some(r) = reports.iter().find(|r| r.settings != settings) {
        return Err(Error::InvalidArgument(format!(
            "shard {} was made with other settings than shard {}",
            r.shard.as_deref().unwrap_or("(whole)"),
            first.shard.as_deref().unwrap_or("(whole)")
        )));
    }
    let records: Vec<_> = reports.into_iter().flat_map(|r| r.records).collect();
    let merged = Report::from_records(settings, None, records)?;
    let missing: Vec<usize> = (0..merged.settings.manifest_entries)
        .filter(|i| !merged.records.iter().any(|r| r.index == *i))
        .collect();
    if !missing.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the shards miss manifest entries {missing:?}: merge every shard's report"
        )));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_manifest() {
        let shards: Vec<Shard> = (1..=3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for pos in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.contains(pos)).count(), 1);
        }
        assert!(shards[0].contains(0) && shards[0].contains(3) && shards[2].contains(2));
        for bad in ["0/3", "4/3", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(shards[1].name(), "2/3");
    }
}
