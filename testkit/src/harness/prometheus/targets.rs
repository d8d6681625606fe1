//! `file_sd` targets a test changes while Prometheus runs: what Step 9's replicas
//! are found through, written the way Prometheus expects to read them.

use std::path::Path;

use anyhow::Context;
use serde_yaml_ng::{Mapping, Value as Yaml};

/// A directory of `file_sd` target files that a test changes while Prometheus runs.
///
/// Prometheus watches the directory and applies a change at once, without a restart or
/// a reload. A container sees the directory through a read-only bind mount at
/// [`CONTAINER_TARGETS_DIR`](super::CONTAINER_TARGETS_DIR); a native Prometheus reads it where it is. The directory is
/// mode 0755 and every file 0644, so the official image's user `nobody` can read them.
/// Files are replaced atomically (written beside, then renamed), so Prometheus never
/// reads half a file.
#[derive(Debug)]
pub struct TargetsDir {
    dir: tempfile::TempDir,
}

/// One entry of a `file_sd` file: targets and the labels they all get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    /// Labels added to every series scraped from these targets.
    pub labels: Vec<(String, String)>,
}

impl TargetGroup {
    /// The targets `host:port` for each of `ports`, without labels.
    #[must_use]
    pub fn ports(host: &str, ports: &[u16]) -> Self {
        Self {
            targets: ports.iter().map(|port| format!("{host}:{port}")).collect(),
            labels: Vec::new(),
        }
    }
}

impl TargetsDir {
    /// An empty directory, readable by everyone.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("login-metrics-targets-")
            .tempdir()
            .context("creating the targets directory")?;
        set_mode(dir.path(), 0o755)?;
        Ok(Self { dir })
    }

    /// The directory on this machine.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `file` (e.g. `login_server.yml`) with `groups`, replacing it atomically.
    pub fn write(&self, file: &str, groups: &[TargetGroup]) -> anyhow::Result<()> {
        let yaml = Yaml::Sequence(
            groups
                .iter()
                .map(|group| {
                    let mut entry = Mapping::new();
                    entry.insert(
                        "targets".into(),
                        Yaml::Sequence(group.targets.iter().map(|t| t.as_str().into()).collect()),
                    );
                    if !group.labels.is_empty() {
                        let labels = group
                            .labels
                            .iter()
                            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                            .collect();
                        entry.insert("labels".into(), Yaml::Mapping(labels));
                    }
                    Yaml::Mapping(entry)
                })
                .collect(),
        );
        self.write_raw(file, serde_yaml_ng::to_string(&yaml)?.as_bytes())
    }

    /// Writes `file` with exactly `bytes` (a file of the repository, for example),
    /// replacing it atomically.
    pub fn write_raw(&self, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let target = self.dir.path().join(file);
        // A dot file: Prometheus' `*.yml` pattern does not match it while it is written.
        let scratch = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&scratch, bytes)
            .with_context(|| format!("writing {}", scratch.display()))?;
        set_mode(&scratch, 0o644)?;
        std::fs::rename(&scratch, &target)
            .with_context(|| format!("renaming {} to {}", scratch.display(), target.display()))
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_files_are_written_readable_and_atomically() {
        let dir = TargetsDir::new().unwrap();
        let mut group = TargetGroup::ports("127.0.0.1", &[8001, 8002]);
        group.labels.push(("zone".into(), "a".into()));
        dir.write("login_server.yml", &[group]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("login_server.yml")).unwrap();
        let yaml: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(yaml[0]["targets"][1], "127.0.0.1:8002");
        assert_eq!(yaml[0]["labels"]["zone"], "a");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["login_server.yml"], "no scratch file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir.path()), 0o755);
            assert_eq!(mode(&dir.path().join("login_server.yml")), 0o644);
        }
    }
}
