//! Alerts on standard output: readable lines or JSON lines.

use std::{io::Write as _, sync::Arc};

use super::{Deliver, DeliverCtx};
use crate::{model::Alert, model::service_config::StdoutFormat, output::alert_text};

pub(super) struct Stdout {
    format: StdoutFormat,
}

impl Stdout {
    pub(super) fn new(format: StdoutFormat) -> Self {
        Stdout { format }
    }
}

impl Deliver for Stdout {
    fn deliver(&mut self, batch: &[Arc<Alert>], _: &DeliverCtx<'_>) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        let mut write = || -> std::io::Result<()> {
            for a in batch {
                match self.format {
                    StdoutFormat::Text => writeln!(out, "{}", alert_text::render(a))?,
                    StdoutFormat::Json => {
                        serde_json::to_writer(&mut out, &**a)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
            out.flush()
        };
        write().map_err(|e| format!("writing to standard output: {e}"))
    }
}
