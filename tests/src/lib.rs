//! The integration-test lab: network namespaces joined by veth, and helpers to run our
//! binaries and real peers inside them. Scenarios live in `tests/tests/`.
