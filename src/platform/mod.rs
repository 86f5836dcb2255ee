//! The outside platform as the relay sees it: typed callbacks and how to read them off the wire.
//! Nothing here touches the database or HTTP.

pub mod callback;
pub mod localtime;
