//! The fake cloud over real HTTP: each test starts it in-process on
//! 127.0.0.1:0 and signs its requests by hand with `secgroup_sign`.

mod admin;
mod alibaba;
mod apsara;
mod baidu;
mod faults;
mod https;
mod support;
