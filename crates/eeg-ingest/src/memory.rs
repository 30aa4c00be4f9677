//! How much memory the instance's sessions may hold: `EEG_SESSION_MEMORY_MIB`, or by default
//! half of the container's memory limit (its cgroup's, v2 or v1), or half of the machine's
//! memory when no limit is set. The other half is for everything that is not session state:
//! librdkafka's fetch-ahead (`EEG_PARTITION_BUFFER_KIB` per partition) and its producer
//! queue, outputs awaiting acknowledgement, snapshots, the live page and the allocator's
//! slack.

use std::path::{Path, PathBuf};

/// Where the default came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The cgroup's memory limit, read from this file.
    Cgroup(PathBuf, u64),
    /// No limit could be read: the machine's memory (`/proc/meminfo`).
    Machine(u64),
    /// Nothing could be read.
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Cgroup(path, bytes) => write!(
                f,
                "half of the container's memory limit of {} MiB ({})",
                bytes >> 20,
                path.display()
            ),
            Source::Machine(bytes) => write!(
                f,
                "half of the machine's {} MiB (no container memory limit found)",
                bytes >> 20
            ),
            Source::Unknown => write!(
                f,
                "{} MiB (neither a container memory limit nor the machine's memory could be read)",
                FALLBACK >> 20
            ),
        }
    }
}

/// The budget when nothing can be read: what a small container holds.
const FALLBACK: u64 = 512 << 20;

/// The default budget for session state, bytes, and where it came from.
pub fn default_budget() -> (u64, Source) {
    let source = cgroup_limit(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup"))
        .map(|(path, bytes)| Source::Cgroup(path, bytes))
        .or_else(|| machine_memory(Path::new("/proc/meminfo")).map(Source::Machine))
        .unwrap_or(Source::Unknown);
    let bytes = match &source {
        Source::Cgroup(_, b) | Source::Machine(b) => b / 2,
        Source::Unknown => FALLBACK,
    };
    (bytes, source)
}

/// Limits at or above this are "no limit" (cgroup v1 writes a page-rounded `i64::MAX`).
const UNLIMITED: u64 = 1 << 60;

/// The memory limit of the process's cgroup and the file it came from: the tightest of its
/// own and its ancestors' (v2: `memory.max` up the tree; v1: `hierarchical_memory_limit`
/// in `memory.stat`, else `memory.limit_in_bytes`). `None` when there is none.
pub fn cgroup_limit(proc_cgroup: &Path, root: &Path) -> Option<(PathBuf, u64)> {
    let text = std::fs::read_to_string(proc_cgroup).ok()?;
    let mut v1 = None;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    if let Some(path) = v1 {
        // Inside a container the cgroup path is often the host's while the container sees
        // its own cgroup at the mount point: look at the path, then at the mount point.
        let base = root.join("memory");
        for dir in [base.join(&path), base.clone()] {
            if let Some(limit) = v1_limit(&dir) {
                return (limit.1 < UNLIMITED).then_some(limit);
            }
        }
    }
    let path = v2?;
    let mut tightest: Option<(PathBuf, u64)> = None;
    let mut dir = root.join(&path);
    loop {
        let file = dir.join("memory.max");
        if let Some(bytes) = read_number(&file)
            && tightest.as_ref().is_none_or(|(_, b)| bytes < *b)
        {
            tightest = Some((file, bytes));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            break;
        }
    }
    tightest.filter(|(_, b)| *b < UNLIMITED)
}

fn v1_limit(dir: &Path) -> Option<(PathBuf, u64)> {
    let stat = dir.join("memory.stat");
    if let Ok(text) = std::fs::read_to_string(&stat)
        && let Some(bytes) = text.lines().find_map(|l| {
            l.strip_prefix("hierarchical_memory_limit ")
                .and_then(|v| v.trim().parse().ok())
        })
    {
        return Some((stat, bytes));
    }
    let file = dir.join("memory.limit_in_bytes");
    read_number(&file).map(|b| (file, b))
}

/// A number from a cgroup file; `max` (no limit) is `None`.
fn read_number(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// `MemTotal` of `/proc/meminfo`, bytes.
pub fn machine_memory(meminfo: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(meminfo).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory of files, removed when dropped.
    struct Tree(PathBuf);

    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(files: &[(&str, &str)]) -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "eeg-memory-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Tree(dir)
    }

    #[test]
    fn cgroup_v2_takes_the_tightest_limit_up_the_tree() {
        let t = tree(&[
            ("proc", "0::/ecs/task/app\n"),
            ("sys/memory.max", "max\n"),
            ("sys/ecs/memory.max", "4294967296\n"),
            ("sys/ecs/task/memory.max", "2147483648\n"),
            ("sys/ecs/task/app/memory.max", "max\n"),
        ]);
        let root = t.path().join("sys");
        let (file, bytes) = cgroup_limit(&t.path().join("proc"), &root).unwrap();
        assert_eq!(bytes, 2 << 30);
        assert_eq!(file, root.join("ecs/task/memory.max"));
    }

    #[test]
    fn cgroup_v2_without_a_limit_is_none() {
        let t = tree(&[("proc", "0::/\n"), ("sys/memory.max", "max\n")]);
        assert_eq!(
            cgroup_limit(&t.path().join("proc"), &t.path().join("sys")),
            None
        );
    }

    #[test]
    fn cgroup_v1_reads_the_hierarchical_limit_at_the_path_or_the_mount_point() {
        let t = tree(&[
            ("proc", "5:cpu:/\n4:memory:/docker/abc\n0::/\n"),
            (
                "sys/memory/docker/abc/memory.stat",
                "cache 0\nhierarchical_memory_limit 1073741824\n",
            ),
            (
                "sys/memory/docker/abc/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        let (_, bytes) = cgroup_limit(&t.path().join("proc"), &t.path().join("sys")).unwrap();
        assert_eq!(bytes, 1 << 30);
        // The container sees its own cgroup at the mount point.
        let t = tree(&[
            ("proc", "4:memory:/docker/abc\n"),
            ("sys/memory/memory.limit_in_bytes", "536870912\n"),
        ]);
        let (_, bytes) = cgroup_limit(&t.path().join("proc"), &t.path().join("sys")).unwrap();
        assert_eq!(bytes, 512 << 20);
        // No limit: the kernel's page-rounded i64::MAX.
        let t = tree(&[
            ("proc", "4:memory:/\n"),
            ("sys/memory/memory.limit_in_bytes", "9223372036854771712\n"),
        ]);
        assert_eq!(
            cgroup_limit(&t.path().join("proc"), &t.path().join("sys")),
            None
        );
    }

    #[test]
    fn the_machines_memory_is_memtotal() {
        let t = tree(&[(
            "meminfo",
            "MemTotal:       24576000 kB\nMemFree:        1000 kB\n",
        )]);
        assert_eq!(
            machine_memory(&t.path().join("meminfo")),
            Some(24_576_000 << 10)
        );
    }

    #[test]
    fn the_source_says_where_the_budget_came_from() {
        let s = Source::Cgroup("/sys/fs/cgroup/memory.max".into(), 2 << 30);
        assert_eq!(
            s.to_string(),
            "half of the container's memory limit of 2048 MiB (/sys/fs/cgroup/memory.max)"
        );
    }
}
