//! Per-session memory, process and CPU limits for the local runtime, through the kernel's
//! cgroups: v2 when the unified hierarchy is mounted at /sys/fs/cgroup, else the v1 `memory`,
//! `pids` and `cpu` controllers. Each session gets `pico/<id>` in each; the agent joins them before
//! it starts, so every process of the sandbox is counted.

use std::path::{Path, PathBuf};

use uuid::Uuid;

pub(super) const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory for the whole sandbox (0 = unlimited).
    pub memory: u64,
    /// Processes and threads in the whole sandbox (0 = unlimited).
    pub pids: u64,
    /// CPU time of the whole sandbox in thousandths of a CPU (0 = unlimited).
    pub millicpus: u64,
}

/// The CFS period the CPU quota is expressed in (the kernel's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
pub enum Cgroups {
    V2(PathBuf),
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
    },
    /// Not root, or no usable controllers: limits cannot be applied.
    Unavailable(String),
}

const CONTROLLERS: &str = "+memory +pids +cpu";

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

impl Cgroups {
    /// Finds the controllers and makes this server's parent groups,
    /// `pico/<hash of the state directory>`: servers on other state directories manage
    /// their own groups and never touch these.
    pub fn detect(state_dir: &Path) -> Self {
        let root = Path::new(ROOT);
        let server = server_group(state_dir);
        if root.join("cgroup.controllers").is_file() {
            let parent = root.join(&server);
            let enabled = std::fs::create_dir_all(&parent)
                .and_then(|()| write(&root.join("cgroup.subtree_control"), CONTROLLERS))
                .and_then(|()| write(&root.join("pico/cgroup.subtree_control"), CONTROLLERS))
                .and_then(|()| write(&parent.join("cgroup.subtree_control"), CONTROLLERS));
            return match enabled {
                Ok(()) => Self::V2(parent),
                Err(e) => Self::Unavailable(format!("cgroup v2 controllers: {e}")),
            };
        }
        let (memory, pids, cpu) = (
            root.join("memory").join(&server),
            root.join("pids").join(&server),
            root.join("cpu").join(&server),
        );
        let made = [&memory, &pids, &cpu]
            .into_iter()
            .try_for_each(std::fs::create_dir_all);
        match made {
            Ok(()) => Self::V1 { memory, pids, cpu },
            Err(e) => Self::Unavailable(format!("cgroup v1 memory/pids/cpu controllers: {e}")),
        }
    }

    fn dirs(&self, id: Uuid) -> Vec<PathBuf> {
        let name = id.to_string();
        match self {
            Self::V2(parent) => vec![parent.join(name)],
            Self::V1 { memory, pids, cpu } => {
                vec![memory.join(&name), pids.join(&name), cpu.join(name)]
            }
            Self::Unavailable(_) => Vec::new(),
        }
    }

    /// Creates the session's groups with `limits`; returns the `cgroup.procs` files the
    /// agent must join.
    pub fn create(&self, id: Uuid, limits: Limits) -> std::io::Result<Vec<PathBuf>> {
        let dirs = self.dirs(id);
        for dir in &dirs {
            std::fs::create_dir_all(dir)?;
        }
        let value = |n: u64| {
            if n == 0 {
                "max".to_owned()
            } else {
                n.to_string()
            }
        };
        match self {
            Self::V2(_) => {
                write(&dirs[0].join("memory.max"), &value(limits.memory))?;
                write(&dirs[0].join("pids.max"), &value(limits.pids))?;
                // Without swap accounting a sandbox could page its way past the limit.
                let _ = write(&dirs[0].join("memory.swap.max"), "0");
                let quota = match limits.millicpus {
                    0 => "max".to_owned(),
                    m => (m * CPU_PERIOD_US / 1000).to_string(),
                };
                write(
                    &dirs[0].join("cpu.max"),
                    &format!("{quota} {CPU_PERIOD_US}"),
                )?;
            }
            Self::V1 { .. } => {
                let memory = if limits.memory == 0 {
                    "-1".to_owned()
                } else {
                    limits.memory.to_string()
                };
                write(&dirs[0].join("memory.limit_in_bytes"), &memory)?;
                write(&dirs[1].join("pids.max"), &value(limits.pids))?;
                let quota = match limits.millicpus {
                    0 => "-1".to_owned(),
                    m => (m * CPU_PERIOD_US / 1000).to_string(),
                };
                write(
                    &dirs[2].join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                )?;
                write(&dirs[2].join("cpu.cfs_quota_us"), &quota)?;
            }
            Self::Unavailable(_) => {}
        }
        Ok(dirs.iter().map(|d| d.join("cgroup.procs")).collect())
    }

    /// Sessions that have a group, for cleaning up after a crash.
    pub fn session_ids(&self) -> Vec<Uuid> {
        let parents: Vec<&PathBuf> = match self {
            Self::V2(parent) => vec![parent],
            Self::V1 { memory, pids, cpu } => vec![memory, pids, cpu],
            Self::Unavailable(_) => Vec::new(),
        };
        let mut ids: Vec<Uuid> = parents
            .into_iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flat_map(|entries| entries.flatten())
            .filter_map(|e| Uuid::parse_str(&e.file_name().to_string_lossy()).ok())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Removes the session's groups if no process is in them.
    pub fn remove_if_empty(&self, id: Uuid) {
        for dir in self.dirs(id) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Removes the session's groups once its processes are gone.
    pub async fn remove(&self, id: Uuid) {
        for dir in self.dirs(id) {
            for _ in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        // Busy until the last process of the sandbox has exited.
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// `pico/<hash of the state directory>`: this server's groups under each hierarchy.
pub(super) fn server_group(state_dir: &Path) -> String {
    format!(
        "pico/{:016x}",
        fnv1a(state_dir.as_os_str().as_encoded_bytes())
    )
}

/// A stable 64-bit hash (FNV-1a), for naming this server's cgroups.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Parses a CPU count like `1`, `0.5` or `2` into thousandths of a CPU (`0` = no limit).
pub fn parse_cpus(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    // Kubernetes notation too (`500m`), so one flag serves both runtimes.
    let (number, scale) = match trimmed.strip_suffix('m') {
        Some(millis) => (millis, 1000.0),
        None => (trimmed, 1.0),
    };
    let cpus: f64 = number
        .parse::<f64>()
        .map(|n| n / scale)
        .map_err(|_| format!("{text:?} is not a number of CPUs like 1, 0.5, 2 or 500m"))?;
    if !(0.0..=4096.0).contains(&cpus) {
        return Err(format!("{text:?}: CPUs must lie between 0 and 4096"));
    }
    let millis = (cpus * 1000.0).round() as u64;
    if cpus > 0.0 && millis < 10 {
        return Err(format!("{text:?}: at least 0.01 CPU"));
    }
    Ok(millis)
}

/// Parses `0`, `1048576`, `512K`, `64M`, `4G` (binary units) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 0, 512M or 4G"))?;
    let factor: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("lots").is_err() && parse_size("5X").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1"), Ok(1000));
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus("0"), Ok(0));
        assert_eq!(parse_cpus("500m"), Ok(500));
        assert_eq!(parse_cpus("2000m"), Ok(2000));
        assert!(
            parse_cpus("-1").is_err() && parse_cpus("x").is_err() && parse_cpus("0.001").is_err()
        );
    }
}
