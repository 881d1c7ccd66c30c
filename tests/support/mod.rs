pub mod browser;
pub mod dump;
pub mod forge;
pub mod huge;
pub mod kube_api;
pub mod kube_resize;
pub mod postgres;
pub mod prometheus;
