//! The peers taskpool is measured against, when they are not plain libraries: the raw pipe
//! floor, procspawn's pool, and Python's pools (run by a script).

pub mod pipe_floor;
pub mod procspawn;
