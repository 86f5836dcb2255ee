//! Statuses as the database keeps them: one enum each, spelled in SQL only through `as_str`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {kind}")]
pub struct ParseStatusError {
    kind: &'static str,
    value: String,
}

impl ParseStatusError {
    pub(crate) fn new(kind: &'static str, value: &str) -> Self {
        Self { kind, value: value.chars().take(64).collect() }
    }
}

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseStatusError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(ParseStatusError::new($kind, other)),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseStatusError;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// Where a delivery stands.
    DeliveryStatus, "delivery status", {
        /// Waiting to be sent, being sent, or waiting for its retry.
        Pending => "pending",
        Delivered => "delivered",
        /// Gave up after the retry policy; stays until replayed.
        Dead => "dead",
    }
);

status_enum!(
    /// What became of an inbox row's body.
    InboxStatus, "inbox status", {
        /// Parsed and stored as data.
        Stored => "stored",
        /// Authenticated but not usable as data (kept raw for a fix and `reprocess`).
        Rejected => "rejected",
        /// A dataType this version does not know: kept raw and acknowledged.
        Unrecognized => "unrecognized",
    }
);

status_enum!(
    /// What one delivery attempt came to (the label of the delivery metrics).
    DeliveryOutcome, "delivery outcome", {
        Delivered => "delivered",
        /// Failed; a retry is scheduled.
        Failed => "failed",
        /// Failed for good.
        Dead => "dead",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_what_it_writes() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(*status));
        }
        for status in InboxStatus::ALL {
            assert_eq!(InboxStatus::try_from(status.as_str().to_owned()), Ok(*status));
        }
        assert_eq!(serde_json::to_value(DeliveryStatus::Dead).unwrap(), "dead");
        let err = "gone".parse::<DeliveryStatus>().unwrap_err();
        assert_eq!(err.to_string(), "`gone` is not a delivery status");
    }
}
