//! An external recogniser as a user names it: a command run per query (`--asr-cmd`), a server
//! started once (`--asr-server`), or a shipped adapter by name (`--asr faster-whisper|
//! pocketsphinx`, a server over [`crate::verify::asr_server_command`]).

use super::server::ServerRecognizer;
use super::{CommandRecognizer, Recognizer};
use crate::{Error, Result};
use std::time::Duration;

/// An external recogniser chosen by a user.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalAsr {
    /// `sh -c TEMPLATE` per query.
    Command(String),
    /// `sh -c COMMAND` once, one WAV path per line.
    Server(String),
}

impl ExternalAsr {
    /// The recogniser a user chose: a command template, a server command, or an adapter's
    /// name (faster-whisper reads the default model's CTranslate2 files, fetched if needed);
    /// `None` when none was chosen, an error when more than one was.
    pub fn choose(
        cmd: Option<&str>,
        server: Option<&str>,
        name: Option<&str>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Option<Self>> {
        Ok(match (cmd, server, name) {
            (Some(c), None, None) => Some(ExternalAsr::Command(c.to_string())),
            (None, Some(s), None) => Some(ExternalAsr::Server(s.to_string())),
            (None, None, Some(n)) => {
                let model = if n.trim() == "faster-whisper" {
                    Some(crate::model::provision::resolve_model(None, progress)?)
                } else {
                    None
                };
                Some(ExternalAsr::Server(crate::verify::asr_server_command(
                    n,
                    model.as_deref(),
                    progress,
                )?))
            }
            (None, None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "choose one external recogniser: --asr-cmd, --asr-server or --asr".into(),
                ))
            }
        })
    }

    /// The recogniser, each answer awaited at most `timeout`.
    pub fn recognizer(&self, timeout: Duration) -> Result<Box<dyn Recognizer>> {
        Ok(match self {
            ExternalAsr::Command(c) => Box::new(CommandRecognizer::new(c, timeout)?),
            ExternalAsr::Server(s) => Box::new(ServerRecognizer::new(s, timeout)?),
        })
    }
}
