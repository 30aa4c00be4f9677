//! Where an output goes, and how a file is written whole or not at all: under a temporary
//! name (`FILE.partial`) that is renamed into place when the run succeeds and removed when
//! it fails.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file (created or replaced), or a device or pipe (written in place).
    File(PathBuf),
}

/// An output being written: a file under its temporary name until [`Output::commit`], or
/// standard output, a device or a pipe, written in place.
#[derive(Debug)]
pub struct Output {
    /// The temporary name and the final one, for a file.
    paths: Option<(PathBuf, PathBuf)>,
}

impl Output {
    /// Opens `target` for writing; the writer is buffered. A regular file is created as
    /// `FILE.partial` (next to where it will be, so the rename stays on one file system);
    /// devices and pipes (`/dev/null`, `>(cmd)`) are written in place, since renaming a
    /// file over them would replace the device.
    pub fn create(target: &Target) -> Result<(Output, Box<dyn Write + Send>), Error> {
        let path = match target {
            Target::Stdout => {
                let out = BufWriter::with_capacity(1 << 16, std::io::stdout());
                return Ok((Output { paths: None }, Box::new(out)));
            }
            Target::File(path) => path,
        };
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| {
                    Error::output(format!("{}: cannot open for writing", path.display()), e)
                })?;
            let out = BufWriter::with_capacity(1 << 16, file);
            return Ok((Output { paths: None }, Box::new(out)));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|e| match unusable_directory(path) {
            Some(why) => Error::Output {
                message: format!("{}: cannot create output file: {why}", path.display()),
                source: None,
            },
            None => Error::output(format!("{}: cannot create output file", tmp.display()), e),
        })?;
        let out = BufWriter::with_capacity(1 << 16, file);
        Ok((
            Output {
                paths: Some((tmp, path.to_path_buf())),
            },
            Box::new(out),
        ))
    }

    /// Puts a file in place under its name. The writer must have been flushed.
    pub fn commit(mut self) -> Result<(), Error> {
        if let Some((tmp, path)) = self.paths.take() {
            std::fs::rename(&tmp, &path).map_err(|e| {
                Error::output(
                    format!("{}: cannot rename to {}", tmp.display(), path.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Removes a file's temporary name: nothing is left of the output.
    pub fn discard(mut self) {
        if let Some((tmp, _)) = self.paths.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Why the directory `path` would be created in cannot hold it, if that is why creating it
/// failed: it does not exist, or it is not a directory.
fn unusable_directory(path: &Path) -> Option<String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("the directory {} does not exist", dir.display()))
        }
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", dir.display())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch;

    fn partial(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}.partial", path.display()))
    }

    #[test]
    fn a_file_appears_under_its_name_only_when_committed() {
        let dir = scratch("output_commit");
        let path = dir.join("a.jsonl");
        let (out, mut w) = Output::create(&Target::File(path.clone())).unwrap();
        w.write_all(b"one\n").unwrap();
        w.flush().unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read(partial(&path)).unwrap(), b"one\n");
        out.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
        assert!(!partial(&path).exists());
    }

    #[test]
    fn a_discarded_file_leaves_nothing_and_an_old_file_as_it_was() {
        let dir = scratch("output_discard");
        let path = dir.join("a.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let (out, mut w) = Output::create(&Target::File(path.clone())).unwrap();
        w.write_all(b"new\n").unwrap();
        w.flush().unwrap();
        out.discard();
        assert_eq!(std::fs::read(&path).unwrap(), b"old\n");
        assert!(!partial(&path).exists());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_device_is_written_in_place() {
        let null = PathBuf::from("/dev/null");
        let (out, mut w) = Output::create(&Target::File(null.clone())).unwrap();
        w.write_all(b"gone\n").unwrap();
        w.flush().unwrap();
        out.commit().unwrap();
        assert!(!partial(&null).exists());
        assert!(!std::fs::metadata(&null).unwrap().is_file());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = scratch("output_missing_dir");
        let missing = dir.join("no").join("such");
        let path = missing.join("a.jsonl");
        let Err(e) = Output::create(&Target::File(path.clone())) else {
            panic!("{} created", path.display());
        };
        assert!(!e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot create output file: the directory {} does not exist",
                path.display(),
                missing.display()
            )
        );
        // A file where the directory should be.
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let path = file.join("a.jsonl");
        let Err(e) = Output::create(&Target::File(path.clone())) else {
            panic!("{} created", path.display());
        };
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot create output file: {} is not a directory",
                path.display(),
                file.display()
            )
        );
    }
}
