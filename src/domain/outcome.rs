//! What storing one callback did, and where the callback came from.

/// Where a callback came from: pushed by the platform, or fetched back from its REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Push,
    Backfill,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Push => "push",
            Source::Backfill => "backfill",
        }
    }
}

impl TryFrom<String> for Source {
    type Error = super::ParseStatusError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "push" => Ok(Source::Push),
            "backfill" => Ok(Source::Backfill),
            _ => Err(super::ParseStatusError::new("source", &text)),
        }
    }
}

impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What storing a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ingested {
    /// First time this thing was seen.
    Created,
    /// Seen before with other content: the normalized rows were updated.
    Changed,
    /// This exact content was stored before: only the inbox counters moved.
    Duplicate,
    /// An unknown dataType, kept raw.
    Unrecognized,
}

impl Ingested {
    /// The label of this outcome in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ingested::Created => "stored",
            Ingested::Changed => "updated",
            Ingested::Duplicate => "duplicate",
            Ingested::Unrecognized => "unrecognized",
        }
    }
}
