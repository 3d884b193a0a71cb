//! Client for the IBM Cloud instance metadata service's identity API, the certificate renewal
//! schedule, and a real HTTP test server that speaks the same API.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
