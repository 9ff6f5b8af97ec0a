//! What a pull reports as it goes, for the API to render as Docker's JSON
//! messages and the CLI as bars.

/// One step of a pull or a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A line about the whole pull (`Pulling from library/busybox`, with
    /// the tag as its id; `Digest: …`; `Status: …`).
    Status { id: Option<String>, status: String },
    /// A layer's step, the layer named by its blob digest's first 12 hex
    /// digits: `Pulling fs layer`, `Waiting`, `Downloading` (with bytes
    /// done and in all), `Verifying Checksum`, `Download complete`,
    /// `Extracting`, `Pull complete`, `Already exists`; of a push (named
    /// by its diff id's): `Preparing`, `Pushing`, `Pushed`, `Layer already
    /// exists`, `Mounted from <repository>`.
    Layer { id: String, status: String, detail: Option<(u64, u64)> },
}

/// Where a pull sends its progress; a receiver gone (a client that hung
/// up) does not stop the pull.
#[derive(Debug, Clone)]
pub struct Reporter(pub Option<tokio::sync::mpsc::UnboundedSender<Progress>>);

impl Reporter {
    pub fn status(&self, id: Option<&str>, status: impl Into<String>) {
        self.send(Progress::Status { id: id.map(str::to_owned), status: status.into() });
    }

    pub fn layer(&self, id: &str, status: impl Into<String>, detail: Option<(u64, u64)>) {
        self.send(Progress::Layer { id: id.to_owned(), status: status.into(), detail });
    }

    fn send(&self, p: Progress) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(p);
        }
    }
}
