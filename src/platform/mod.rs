//! The outside platform as the relay sees it: typed callbacks, the encrypted callback mode, and how
//! to read them off the wire. Nothing here touches the database or HTTP.

pub mod callback;
pub mod client;
pub mod crypto;
pub mod limits;
pub mod localtime;
pub mod signing;
pub mod xml;
