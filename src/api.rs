//! api (being written by the lead).
