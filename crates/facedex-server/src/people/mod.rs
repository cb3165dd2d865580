//! The People service: the persons the index groups its faces into, listed and shown with the
//! read token, named, hidden, merged, split and re-clustered with the write token.

pub mod editor;
pub mod service;
