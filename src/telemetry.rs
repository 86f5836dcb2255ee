//! Logging set-up and the helpers that keep people's data out of log lines.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,sqlx=warn";

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    if format == LogFormat::Json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    // A second init (tests start several apps in one process) is harmless, so its error is ignored.
    // Logs go to stderr: stdout is for what commands print (JSON that scripts read). Colour only on
    // a terminal, never in files and log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `17751279857` → `177****9857`: enough to recognise a number in a support case, not to call it.
pub fn mask_phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() < 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// A value from outside (an account name from the URL) made safe and short for a log line.
pub fn loggable(text: &str) -> String {
    let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_keep_only_their_ends() {
        assert_eq!(mask_phone("17751279857"), "177****9857");
        assert_eq!(mask_phone("+8617751279857"), "+86****9857");
        assert_eq!(mask_phone("12345"), "*****");
    }

    #[test]
    fn loggable_text_is_escaped_and_bounded() {
        assert_eq!(loggable("a\nb"), "a\\nb");
        assert_eq!(loggable(&"x".repeat(100)).chars().count(), 65);
    }
}
