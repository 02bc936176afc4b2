//! Reads one or more trace files (e.g. the parts of a rotated recording, in
//! any order) as one stream of events merged by time.

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::Read,
    path::PathBuf,
};

use super::{
    TraceMeta,
    error::{SkipCounts, TraceError, TraceWarning, Truncated},
    file_reader::{Diagnostics, FileReader},
};
use crate::model::{Body, Event};

/// Any byte source a trace can be read from (files, pipes, memory).
pub type Source = Box<dyn Read + Send>;

struct Stream {
    file: FileReader<Source>,
    /// Decoded events of the current block, in file order.
    pending: VecDeque<Event>,
    done: bool,
}

pub struct TraceReader {
    streams: Vec<Stream>,
    meta: TraceMeta,
    diag: Diagnostics,
    truncations: Vec<Truncated>,
    /// Stack definitions already yielded: writers repeat them in every
    /// rotated file, the merged stream carries each once.
    stacks: HashMap<u32, Vec<String>>,
    stopped: bool,
}

impl TraceReader {
    /// Opens 1..n trace files. Their headers are read and checked now: all
    /// must come from the same host and kernel.
    pub fn open(paths: &[PathBuf]) -> Result<Self, TraceError> {
        let mut sources = Vec::with_capacity(paths.len());
        for p in paths {
            let md = std::fs::metadata(p).map_err(|source| TraceError::Open {
                file: p.clone(),
                source,
            })?;
            if md.is_dir() {
                return Err(TraceError::IsDirectory { file: p.clone() });
            }
            let f = File::open(p).map_err(|source| TraceError::Open {
                file: p.clone(),
                source,
            })?;
            sources.push((p.clone(), Box::new(f) as Source));
        }
        Self::from_sources(sources)
    }

    /// Reads a trace held in memory (`name` is used in messages).
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, TraceError> {
        Self::from_sources(vec![(name.into(), Box::new(std::io::Cursor::new(bytes)))])
    }

    /// Reads traces from arbitrary sources, each named for messages.
    pub fn from_sources(sources: Vec<(PathBuf, Source)>) -> Result<Self, TraceError> {
        if sources.is_empty() {
            return Err(TraceError::NoInput);
        }
        let mut files = Vec::with_capacity(sources.len());
        for (path, r) in sources {
            files.push(FileReader::open(path, r)?);
        }
        // Oldest recording first, then by rotation part.
        files.sort_by_key(|f| {
            (
                f.meta.clock.realtime_ns,
                f.header.recording_id,
                f.header.sequence,
            )
        });
        let mut diag = Diagnostics::default();
        let first = &files[0];
        for (i, f) in files.iter().enumerate().skip(1) {
            let host = |f: &FileReader<Source>| {
                format!(
                    "host {:?}, kernel {:?}",
                    f.meta.hostname, f.meta.kernel.release
                )
            };
            if (&f.meta.hostname, &f.meta.kernel.release)
                != (&first.meta.hostname, &first.meta.kernel.release)
            {
                return Err(TraceError::Mismatch {
                    file: f.path().to_path_buf(),
                    first: first.path().to_path_buf(),
                    found: host(f),
                    expected: host(first),
                });
            }
            let prev = &files[i - 1];
            if (prev.header.recording_id, prev.header.sequence)
                == (f.header.recording_id, f.header.sequence)
            {
                return Err(TraceError::DuplicateFile {
                    file: f.path().to_path_buf(),
                    other: prev.path().to_path_buf(),
                    recording_id: f.header.recording_id,
                    sequence: f.header.sequence,
                });
            }
            if f.header.recording_id != first.header.recording_id {
                diag.warn(TraceWarning::OtherRecording {
                    file: f.path().to_path_buf(),
                    found: f.header.recording_id,
                    expected: first.header.recording_id,
                });
            }
        }
        let meta = first.meta.clone();
        Ok(TraceReader {
            streams: files
                .into_iter()
                .map(|file| Stream {
                    file,
                    pending: VecDeque::new(),
                    done: false,
                })
                .collect(),
            meta,
            diag,
            truncations: Vec::new(),
            stacks: HashMap::new(),
            stopped: false,
        })
    }

    /// The header of the oldest file.
    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    /// The next event in time order (ties: older file first, then file
    /// order). `Err` only for fatal problems (a read error); iteration ends
    /// after it.
    pub fn next_event(&mut self) -> Option<Result<Event, TraceError>> {
        loop {
            if self.stopped {
                return None;
            }
            if let Err(e) = self.refill() {
                self.stopped = true;
                return Some(Err(e));
            }
            let mut best: Option<(usize, u64)> = None;
            for (i, s) in self.streams.iter().enumerate() {
                if let Some(ev) = s.pending.front()
                    && best.is_none_or(|(_, t)| ev.time_ns < t)
                {
                    best = Some((i, ev.time_ns));
                }
            }
            let (i, _) = best?;
            let ev = self.streams[i].pending.pop_front()?;
            if let Body::StackDef(s) = &ev.body {
                if self.stacks.get(&s.id) == Some(&s.frames) {
                    continue;
                }
                self.stacks.insert(s.id, s.frames.clone());
            }
            return Some(Ok(ev));
        }
    }

    /// Decodes the next block of every stream whose current block is used up.
    fn refill(&mut self) -> Result<(), TraceError> {
        for s in &mut self.streams {
            while s.pending.is_empty() && !s.done {
                match s.file.next_block(&mut self.diag)? {
                    Some(events) => s.pending = events.into(),
                    None => {
                        s.done = true;
                        if let Some(t) = s.file.truncation() {
                            self.truncations.push(t.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The first file found cut short (known once it has been read to its end).
    pub fn truncation(&self) -> Option<Truncated> {
        self.truncations.first().cloned()
    }

    /// Every file found cut short.
    pub fn truncations(&self) -> &[Truncated] {
        &self.truncations
    }

    /// Damage stepped over so far (at most `MAX_WARNINGS` kept).
    pub fn warnings(&self) -> &[TraceWarning] {
        &self.diag.warnings
    }

    /// Totals of what was skipped, including what warnings do not list.
    pub fn skipped(&self) -> SkipCounts {
        self.diag.counts
    }
}

impl Iterator for TraceReader {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}
