//! `tanyi-relay crypto encrypt|decrypt|sign`: the encrypted callback mode by hand, for operators
//! checking an account's token and key against what the platform sends.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::platform::crypto::{signature, CallbackCrypto};
use crate::platform::xml::encrypt_text;

#[derive(Subcommand)]
pub enum CryptoCommand {
    /// Encrypt and sign MESSAGE ("-" reads standard input); prints the ciphertext, the signature
    /// and the XML body as JSON.
    Encrypt {
        #[command(flatten)]
        keys: Keys,
        /// Millisecond timestamp to sign with (default: now).
        #[arg(long)]
        timestamp: Option<String>,
        /// Nonce to sign with (default: random digits).
        #[arg(long)]
        nonce: Option<String>,
        /// The 16-character prefix (default: random). Fixed only to reproduce a known message.
        #[arg(long)]
        random: Option<String>,
        message: String,
    },
    /// Decrypt ENCRYPTED (the Encrypt text or a whole XML body; "-" reads standard input). With
    /// --signature, --timestamp and --nonce the signature is checked first, as the relay does.
    Decrypt {
        #[command(flatten)]
        keys: Keys,
        #[arg(long, requires_all = ["timestamp", "nonce"])]
        signature: Option<String>,
        #[arg(long)]
        timestamp: Option<String>,
        #[arg(long)]
        nonce: Option<String>,
        encrypted: String,
    },
    /// Print the msg_signature of ENCRYPTED for a token, timestamp and nonce.
    Sign {
        /// The account's token (or use --account).
        #[arg(long, env = "TANYI_RELAY_CRYPTO_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Take the token from this configured account.
        #[arg(long, conflicts_with = "token")]
        account: Option<String>,
        #[arg(long)]
        timestamp: String,
        #[arg(long)]
        nonce: String,
        encrypted: String,
    },
}

/// Where the secrets come from: a configured account, or flags / environment variables (kept out
/// of shell history and `ps` by preferring the environment).
#[derive(Args)]
pub struct Keys {
    /// Take token, key and receive id from this configured account.
    #[arg(long, conflicts_with_all = ["token", "aes_key", "receive_id"])]
    account: Option<String>,
    #[arg(long, env = "TANYI_RELAY_CRYPTO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The 43-character EncodingAESKey.
    #[arg(long, env = "TANYI_RELAY_CRYPTO_AES_KEY", hide_env_values = true)]
    aes_key: Option<String>,
    #[arg(long, default_value = "")]
    receive_id: String,
}

pub fn run(command: CryptoCommand, config: Option<&Path>) -> anyhow::Result<()> {
    match command {
        CryptoCommand::Encrypt { keys, timestamp, nonce, random, message } => {
            let crypto = keys.crypto(config)?;
            let message = read_argument(&message)?;
            let prefix: [u8; 16] = match random {
                Some(random) => {
                    random.as_bytes().try_into().map_err(|_| anyhow!("--random must be exactly 16 bytes"))?
                }
                None => {
                    let mut prefix = [0u8; 16];
                    getrandom::getrandom(&mut prefix).context("no random source")?;
                    prefix
                }
            };
            let timestamp = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp_millis().to_string());
            let nonce = nonce.unwrap_or_else(random_digits);
            let sealed = crypto.seal(&message, &timestamp, &nonce, &prefix);
            let out = serde_json::json!({
                "encrypt": sealed.encrypt,
                "msg_signature": sealed.msg_signature,
                "timestamp": sealed.timestamp,
                "nonce": sealed.nonce,
                "xml": sealed.xml,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        CryptoCommand::Decrypt { keys, signature, timestamp, nonce, encrypted } => {
            let crypto = keys.crypto(config)?;
            let input = read_argument(&encrypted)?;
            let text = if input.trim_start().starts_with('<') {
                encrypt_text(input.as_bytes()).map_err(|e| anyhow!("the XML is unusable: {e}"))?
            } else {
                input.trim().to_owned()
            };
            let plaintext = match (signature, timestamp, nonce) {
                (Some(signature), Some(timestamp), Some(nonce)) => {
                    crypto.open(&signature, &timestamp, &nonce, &text)?
                }
                _ => crypto.decrypt(&text)?,
            };
            println!("{plaintext}");
        }
        CryptoCommand::Sign { token, account, timestamp, nonce, encrypted } => {
            let token = match (token, account) {
                (Some(token), _) => token,
                (None, Some(name)) => {
                    let settings = Settings::load(config)?;
                    let account = settings
                        .accounts
                        .iter()
                        .find(|a| a.name == name)
                        .ok_or_else(|| anyhow!("no account named `{name}` in the configuration"))?;
                    let crypto = account.crypto.as_ref().ok_or_else(|| anyhow!("account `{name}` has no token"))?;
                    println!("{}", crypto.signature(&timestamp, &nonce, &read_argument(&encrypted)?));
                    return Ok(());
                }
                (None, None) => bail!("give --token (or TANYI_RELAY_CRYPTO_TOKEN) or --account"),
            };
            println!("{}", signature(&token, &timestamp, &nonce, &read_argument(&encrypted)?));
        }
    }
    Ok(())
}

impl Keys {
    fn crypto(&self, config: Option<&Path>) -> anyhow::Result<CallbackCrypto> {
        if let Some(name) = &self.account {
            let settings = Settings::load(config)?;
            let account = settings
                .accounts
                .iter()
                .find(|a| &a.name == name)
                .ok_or_else(|| anyhow!("no account named `{name}` in the configuration"))?;
            return account.crypto.clone().ok_or_else(|| anyhow!("account `{name}` is not in encrypted mode"));
        }
        let token =
            self.token.as_deref().ok_or_else(|| anyhow!("give --token (or TANYI_RELAY_CRYPTO_TOKEN) or --account"))?;
        let key = self
            .aes_key
            .as_deref()
            .ok_or_else(|| anyhow!("give --aes-key (or TANYI_RELAY_CRYPTO_AES_KEY) or --account"))?;
        CallbackCrypto::new(token, key, &self.receive_id).map_err(|e| anyhow!("--aes-key {e}"))
    }
}

fn read_argument(value: &str) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value.to_owned());
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
    Ok(text)
}

fn random_digits() -> String {
    let mut bytes = [0u8; 10];
    // A nonce only has to differ between messages; fall back to the clock if there is no entropy.
    if getrandom::getrandom(&mut bytes).is_err() {
        return chrono::Utc::now().timestamp_subsec_nanos().to_string();
    }
    bytes.iter().map(|b| char::from(b'0' + b % 10)).collect()
}
