//! Stand-ins for the outside world, for tests, demos and benchmarks: the platform's REST API and
//! the platform pushing callbacks.

pub mod mock_platform;
mod rng;
pub mod simulate;
pub mod traffic;
