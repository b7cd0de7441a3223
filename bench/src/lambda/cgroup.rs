//! Lambda's CPU share, as a cgroup v1 CPU quota: a function gets a share of a vCPU in
//! proportion to its memory, one whole vCPU at 1,769 MB.
//!
//! [`Share::create`] makes one child cgroup under each of the two parents that
//! `scripts/bench lambda` creates (the `cpu` and `cpuacct` hierarchies are mounted apart here),
//! sets `cpu.cfs_period_us` and `cpu.cfs_quota_us`, and removes both again when dropped (the
//! script removes anything left over, also when this process is killed). A child process joins
//! both between `fork` and `exec` ([`Share::confine`]), so its whole start runs under the
//! quota. Its CPU time is read from `cpuacct.usage` (nanoseconds, every thread of every
//! process in the group), throttling from `cpu.stat`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::BoxError;

/// `cpu.cfs_period_us`: the kernel's default, 100 ms.
pub(crate) const PERIOD_US: u64 = 100_000;
/// The memory size at which a Lambda function has one whole vCPU.
pub(crate) const ONE_VCPU_MB: u64 = 1769;
/// The kernel's smallest `cpu.cfs_quota_us` (1 ms).
const MIN_QUOTA_US: u64 = 1000;

/// `cpu.cfs_quota_us` for a function of `memory_mb`: the period × memory / 1,769, rounded to
/// the nearest microsecond (and never under the kernel's 1 ms minimum).
pub(crate) fn quota_us(memory_mb: u64) -> u64 {
    ((PERIOD_US * memory_mb + ONE_VCPU_MB / 2) / ONE_VCPU_MB).max(MIN_QUOTA_US)
}

/// The share of one vCPU that a quota gives.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn vcpus(quota_us: u64) -> f64 {
    quota_us as f64 / PERIOD_US as f64
}

/// What `cpu.stat` says about throttling so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Throttling {
    /// Periods in which the group ran out of quota.
    pub(crate) periods: u64,
    /// Time its tasks spent throttled, in nanoseconds.
    pub(crate) nanos: u64,
}

/// Reads `nr_throttled` and `throttled_time` from a `cpu.stat` text.
pub(crate) fn parse_throttling(stat: &str) -> Throttling {
    let field = |name: &str| {
        stat.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    Throttling {
        periods: field("nr_throttled "),
        nanos: field("throttled_time "),
    }
}

/// One memory size's cgroups; removed when dropped.
#[derive(Debug)]
pub(crate) struct Share {
    cpu: PathBuf,
    cpuacct: PathBuf,
    quota_us: u64,
}

impl Share {
    /// Creates `mem-<memory_mb>` under both parents with the memory size's quota.
    pub(crate) fn create(
        cpu_parent: &Path,
        cpuacct_parent: &Path,
        memory_mb: u64,
    ) -> Result<Self, BoxError> {
        let name = format!("mem-{memory_mb}");
        let share = Self {
            cpu: cpu_parent.join(&name),
            cpuacct: cpuacct_parent.join(&name),
            quota_us: quota_us(memory_mb),
        };
        // Made before the first mkdir, so that a failure half-way removes what was made.
        std::fs::create_dir(&share.cpu)?;
        std::fs::create_dir(&share.cpuacct)?;
        std::fs::write(share.cpu.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        std::fs::write(
            share.cpu.join("cpu.cfs_quota_us"),
            share.quota_us.to_string(),
        )?;
        Ok(share)
    }

    /// The quota, in microseconds per [`PERIOD_US`].
    pub(crate) fn quota_us(&self) -> u64 {
        self.quota_us
    }

    /// CPU time used by the group so far, in nanoseconds.
    pub(crate) fn usage_nanos(&self) -> Result<u64, BoxError> {
        Ok(std::fs::read_to_string(self.cpuacct.join("cpuacct.usage"))?
            .trim()
            .parse()?)
    }

    /// Throttling of the group so far.
    pub(crate) fn throttling(&self) -> Result<Throttling, BoxError> {
        Ok(parse_throttling(&std::fs::read_to_string(
            self.cpu.join("cpu.stat"),
        )?))
    }

    /// Makes `command`'s child join both groups before it execs: it writes `0` ("the writing
    /// process") to each `cgroup.procs`, through files opened here, so the child allocates
    /// nothing between `fork` and `exec`.
    #[allow(unsafe_code)]
    pub(crate) fn confine(&self, command: &mut tokio::process::Command) -> Result<(), BoxError> {
        let open = |dir: &Path| File::options().write(true).open(dir.join("cgroup.procs"));
        let cpu = open(&self.cpu)?;
        let cpuacct = open(&self.cpuacct)?;
        // SAFETY: the closure only writes two bytes to two files already open (a `write`
        // system call each, no allocation, no lock), which is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                (&cpu).write_all(b"0")?;
                (&cpuacct).write_all(b"0")
            });
        }
        Ok(())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        for dir in [&self.cpu, &self.cpuacct] {
            if let Err(err) = std::fs::remove_dir(dir) {
                eprintln!(
                    "lambda: could not remove the cgroup {}: {err}",
                    dir.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_the_period_times_memory_over_1769() {
        let quotas: Vec<u64> = [128, 256, 512, 1024, 1769, 3538]
            .into_iter()
            .map(quota_us)
            .collect();
        assert_eq!(quotas, [7236, 14471, 28943, 57886, 100_000, 200_000]);
    }

    #[test]
    fn a_tiny_memory_gets_the_kernels_smallest_quota() {
        assert_eq!(quota_us(1), 1000);
    }

    #[test]
    fn a_quota_of_a_whole_period_is_one_vcpu() {
        assert!((vcpus(quota_us(1769)) - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn throttling_is_read_from_cpu_stat() {
        let stat = "nr_periods 12\nnr_throttled 7\nthrottled_time 123456\nnr_bursts 0\n";
        assert_eq!(
            parse_throttling(stat),
            Throttling {
                periods: 7,
                nanos: 123_456
            }
        );
    }
}
