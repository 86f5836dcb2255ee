//! Stand-ins for the outside world, for tests and demos: the platform's REST API.

pub mod mock_platform;
