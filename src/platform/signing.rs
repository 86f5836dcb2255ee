//! Request signing for the platform's REST API: lowercase hex SHA-256 over the tenant sign and the
//! credentials, exactly as the vendor's Java demo builds it (nothing is escaped or encoded).

use sha2::{Digest, Sha256};

pub fn rest_signature(app_key: &str, app_secret: &str, tenant_sign: &str, version: &str, timestamp: &str) -> String {
    let signed = format!(
        "{tenant_sign}appKey={app_key}&appSecret={app_secret}&tenantSign={tenant_sign}&version={version}&timestamp={timestamp}"
    );
    hex::encode(Sha256::digest(signed.as_bytes()))
}
