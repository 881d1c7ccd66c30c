pub mod postgres;
pub mod prometheus;
