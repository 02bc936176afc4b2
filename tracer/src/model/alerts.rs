//! The alert store: dedup, allow-list, per-rule counts, bounded history.

use std::collections::VecDeque;

use super::alert::{Alert, DedupKey, RuleId};
use super::config::Config;
use super::fasthash::FastMap;
use super::report::RuleSummary;

#[derive(Clone, Copy, Default)]
struct RuleCounts {
    emitted: u64,
    suppressed: u64,
    allowed: u64,
}

pub(crate) struct AlertStore {
    /// Retained alerts, oldest first; `base` is the sequence number of the
    /// front element.
    list: VecDeque<(DedupKey, Alert)>,
    base: u64,
    /// Latest emitted alert per key: its sequence number and event time.
    index: FastMap<DedupKey, (u64, u64)>,
    per_rule: [RuleCounts; RuleId::ALL.len()],
    cap: usize,
}

/// What `raise` did with an occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Raised {
    Emitted,
    Suppressed,
    Allowed,
    Disabled,
}

impl AlertStore {
    pub fn new(cap: usize) -> Self {
        AlertStore {
            list: VecDeque::new(),
            base: 0,
            index: FastMap::default(),
            per_rule: [RuleCounts::default(); RuleId::ALL.len()],
            cap: cap.max(1),
        }
    }

    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    /// One occurrence of `key.rule` at `time_ns`. `comm_allowed` is the
    /// allow-list verdict for the subject; `make` builds the alert (message,
    /// holder) only when it is emitted, so repeats cost a map lookup.
    /// Returns what happened; `evicted` counts alerts dropped for the cap.
    #[allow(clippy::too_many_arguments)]
    pub fn raise(
        &mut self,
        config: &Config,
        key: DedupKey,
        time_ns: u64,
        comm_allowed: bool,
        make: impl FnOnce() -> Alert,
        out: &mut Vec<Alert>,
        evicted: &mut u64,
    ) -> Raised {
        let rule_cfg = config.rules.get(key.rule);
        if !rule_cfg.enabled {
            return Raised::Disabled;
        }
        let counts = &mut self.per_rule[key.rule.index()];
        if comm_allowed {
            counts.allowed += 1;
            return Raised::Allowed;
        }
        let window = config.dedup.window_ns();
        if let Some(&(seq, emitted_ns)) = self.index.get(&key) {
            // Out-of-order repeats (time before the emission) are repeats too.
            if seq >= self.base
                && time_ns.saturating_sub(emitted_ns) < window
                && let Some((_, a)) = self.list.get_mut((seq - self.base) as usize)
            {
                a.count += 1;
                a.suppressed += 1;
                a.last_ns = a.last_ns.max(time_ns);
                counts.suppressed += 1;
                return Raised::Suppressed;
            }
        }
        let mut alert = make();
        alert.severity = rule_cfg.severity;
        alert.count = 1;
        alert.suppressed = 0;
        alert.last_ns = time_ns;
        counts.emitted += 1;
        out.push(alert.clone());
        let seq = self.base + self.list.len() as u64;
        self.list.push_back((key, alert));
        self.index.insert(key, (seq, time_ns));
        while self.list.len() > self.cap {
            if let Some((old_key, _)) = self.list.pop_front() {
                if self
                    .index
                    .get(&old_key)
                    .is_some_and(|&(s, _)| s == self.base)
                {
                    self.index.remove(&old_key);
                }
                self.base += 1;
                *evicted += 1;
            }
        }
        Raised::Emitted
    }

    pub fn emitted(&self) -> u64 {
        self.per_rule.iter().map(|c| c.emitted).sum()
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.list.iter().map(|(_, a)| a.clone()).collect()
    }

    pub fn summary(&self) -> Vec<RuleSummary> {
        RuleId::ALL
            .iter()
            .map(|&rule| {
                let c = self.per_rule[rule.index()];
                RuleSummary {
                    rule,
                    emitted: c.emitted,
                    suppressed: c.suppressed,
                    allowed: c.allowed,
                }
            })
            .collect()
    }
}
