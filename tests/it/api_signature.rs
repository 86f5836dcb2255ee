//! REST request signatures against the vendor's own vectors.

use serde::Deserialize;
use tanyi_relay::platform::signing::rest_signature;

#[derive(Deserialize)]
struct Vector {
    name: String,
    app_key: String,
    app_secret: String,
    tenant_sign: String,
    version: String,
    timestamp: String,
    signature: String,
}

#[test]
fn every_vendor_signature_vector_is_reproduced() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors/api_signature.json");
    let vectors: Vec<Vector> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(vectors.len(), 10);
    for v in vectors {
        let got = rest_signature(&v.app_key, &v.app_secret, &v.tenant_sign, &v.version, &v.timestamp);
        assert_eq!(got, v.signature, "{}", v.name);
    }
}
