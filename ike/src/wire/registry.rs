//! IANA "Internet Key Exchange Version 2 (IKEv2) Parameters" registries as enums.
//!
//! Each enum converts losslessly to and from its wire integer: numbers without a name here are
//! kept as `Unknown(n)` so that a message is never rejected just for carrying a newer codepoint
//! (RFC 7296 §3.10.1: unrecognised status notifies are ignored). Equality and hashing go by the
//! wire value, so `Unknown(12)` equals the named variant for 12. `Display` prints the IANA name.

/// Defines a registry enum with an `Unknown` fallback, conversions and `Display`.
macro_rules! registry {
    (
        $(#[$meta:meta])*
        $name:ident: $repr:ty {
            $( $variant:ident = $value:literal => $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub enum $name {
            $(
                #[doc = concat!("`", $label, "` (", stringify!($value), ")")]
                $variant,
            )*
            /// A value with no name in this registry, preserved as received.
            Unknown($repr),
        }

        impl $name {
            /// The wire value.
            pub const fn value(self) -> $repr {
                match self {
                    $( $name::$variant => $value, )*
                    $name::Unknown(v) => v,
                }
            }

            /// The IANA name, or `None` for a value this crate does not know.
            pub fn name(self) -> Option<&'static str> {
                match <$name>::from(self.value()) {
                    $( $name::$variant => Some($label), )*
                    $name::Unknown(_) => None,
                }
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $( $value => $name::$variant, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                v.value()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.value() == other.value()
            }
        }

        impl Eq for $name {}

        impl core::hash::Hash for $name {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                self.value().hash(state)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "UNKNOWN({})", self.value()),
                }
            }
        }
    };
}

pub(crate) use registry;

registry! {
    /// IKEv2 Exchange Types (RFC 7296 §3.1, RFC 9242, RFC 9370).
    ExchangeType: u8 {
        IkeSaInit = 34 => "IKE_SA_INIT",
        IkeAuth = 35 => "IKE_AUTH",
        CreateChildSa = 36 => "CREATE_CHILD_SA",
        Informational = 37 => "INFORMATIONAL",
        IkeSessionResume = 38 => "IKE_SESSION_RESUME",
        GsaAuth = 39 => "GSA_AUTH",
        GsaRegistration = 40 => "GSA_REGISTRATION",
        GsaRekey = 41 => "GSA_REKEY",
        IkeIntermediate = 43 => "IKE_INTERMEDIATE",
        IkeFollowupKe = 44 => "IKE_FOLLOWUP_KE",
    }
}

registry! {
    /// IKEv2 Payload Types (RFC 7296 §3.2, RFC 7383). Names are the RFC's short notations;
    /// `NONE` (0) ends a payload chain.
    PayloadType: u8 {
        NoNextPayload = 0 => "NONE",
        SecurityAssociation = 33 => "SA",
        KeyExchange = 34 => "KE",
        IdInitiator = 35 => "IDi",
        IdResponder = 36 => "IDr",
        Certificate = 37 => "CERT",
        CertificateRequest = 38 => "CERTREQ",
        Authentication = 39 => "AUTH",
        Nonce = 40 => "Nonce",
        Notify = 41 => "N",
        Delete = 42 => "D",
        VendorId = 43 => "V",
        TsInitiator = 44 => "TSi",
        TsResponder = 45 => "TSr",
        Encrypted = 46 => "SK",
        Configuration = 47 => "CP",
        Eap = 48 => "EAP",
        GenericSecurePassword = 49 => "GSPM",
        GroupId = 50 => "IDg",
        GroupSa = 51 => "GSA",
        KeyDownload = 52 => "KD",
        EncryptedFragment = 53 => "SKF",
        PuzzleSolution = 54 => "PS",
    }
}

registry! {
    /// Security Protocol Identifiers (RFC 7296 §3.3.1); `NONE` (0) is what a notify about no
    /// particular SA carries.
    ProtocolId: u8 {
        None = 0 => "NONE",
        Ike = 1 => "IKE",
        Ah = 2 => "AH",
        Esp = 3 => "ESP",
        FcEspHeader = 4 => "FC_ESP_HEADER",
        FcCtAuthentication = 5 => "FC_CT_AUTHENTICATION",
    }
}

registry! {
    /// Transform Types (RFC 7296 §3.3.2, RFC 9370 additional key exchanges).
    TransformType: u8 {
        Encr = 1 => "ENCR",
        Prf = 2 => "PRF",
        Integ = 3 => "INTEG",
        Ke = 4 => "KE",
        Esn = 5 => "ESN",
        AddKe1 = 6 => "ADDKE1",
        AddKe2 = 7 => "ADDKE2",
        AddKe3 = 8 => "ADDKE3",
        AddKe4 = 9 => "ADDKE4",
        AddKe5 = 10 => "ADDKE5",
        AddKe6 = 11 => "ADDKE6",
        AddKe7 = 12 => "ADDKE7",
    }
}

registry! {
    /// Transform Type 1, encryption algorithm IDs (RFC 7296 §3.3.2, RFC 5282, RFC 7634).
    EncrId: u16 {
        DesIv64 = 1 => "ENCR_DES_IV64",
        Des = 2 => "ENCR_DES",
        TripleDes = 3 => "ENCR_3DES",
        Rc5 = 4 => "ENCR_RC5",
        Idea = 5 => "ENCR_IDEA",
        Cast = 6 => "ENCR_CAST",
        Blowfish = 7 => "ENCR_BLOWFISH",
        TripleIdea = 8 => "ENCR_3IDEA",
        DesIv32 = 9 => "ENCR_DES_IV32",
        Null = 11 => "ENCR_NULL",
        AesCbc = 12 => "ENCR_AES_CBC",
        AesCtr = 13 => "ENCR_AES_CTR",
        AesCcm8 = 14 => "ENCR_AES_CCM_8",
        AesCcm12 = 15 => "ENCR_AES_CCM_12",
        AesCcm16 = 16 => "ENCR_AES_CCM_16",
        AesGcm8 = 18 => "ENCR_AES_GCM_8",
        AesGcm12 = 19 => "ENCR_AES_GCM_12",
        AesGcm16 = 20 => "ENCR_AES_GCM_16",
        NullAuthAesGmac = 21 => "ENCR_NULL_AUTH_AES_GMAC",
        CamelliaCbc = 23 => "ENCR_CAMELLIA_CBC",
        CamelliaCtr = 24 => "ENCR_CAMELLIA_CTR",
        CamelliaCcm8 = 25 => "ENCR_CAMELLIA_CCM_8",
        CamelliaCcm12 = 26 => "ENCR_CAMELLIA_CCM_12",
        CamelliaCcm16 = 27 => "ENCR_CAMELLIA_CCM_16",
        Chacha20Poly1305 = 28 => "ENCR_CHACHA20_POLY1305",
    }
}

impl EncrId {
    /// Whether this is a combined-mode (AEAD) cipher, which is negotiated without an INTEG
    /// transform (RFC 5282 §8).
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            EncrId::AesCcm8
                | EncrId::AesCcm12
                | EncrId::AesCcm16
                | EncrId::AesGcm8
                | EncrId::AesGcm12
                | EncrId::AesGcm16
                | EncrId::CamelliaCcm8
                | EncrId::CamelliaCcm12
                | EncrId::CamelliaCcm16
                | EncrId::Chacha20Poly1305
        )
    }
}

registry! {
    /// Transform Type 2, pseudorandom function IDs (RFC 7296 §3.3.2, RFC 4868).
    PrfId: u16 {
        HmacMd5 = 1 => "PRF_HMAC_MD5",
        HmacSha1 = 2 => "PRF_HMAC_SHA1",
        HmacTiger = 3 => "PRF_HMAC_TIGER",
        Aes128Xcbc = 4 => "PRF_AES128_XCBC",
        HmacSha2_256 = 5 => "PRF_HMAC_SHA2_256",
        HmacSha2_384 = 6 => "PRF_HMAC_SHA2_384",
        HmacSha2_512 = 7 => "PRF_HMAC_SHA2_512",
        Aes128Cmac = 8 => "PRF_AES128_CMAC",
    }
}

registry! {
    /// Transform Type 3, integrity algorithm IDs (RFC 7296 §3.3.2, RFC 4868).
    IntegId: u16 {
        None = 0 => "NONE",
        HmacMd5_96 = 1 => "AUTH_HMAC_MD5_96",
        HmacSha1_96 = 2 => "AUTH_HMAC_SHA1_96",
        DesMac = 3 => "AUTH_DES_MAC",
        KpdkMd5 = 4 => "AUTH_KPDK_MD5",
        AesXcbc96 = 5 => "AUTH_AES_XCBC_96",
        HmacMd5_128 = 6 => "AUTH_HMAC_MD5_128",
        HmacSha1_160 = 7 => "AUTH_HMAC_SHA1_160",
        AesCmac96 = 8 => "AUTH_AES_CMAC_96",
        Aes128Gmac = 9 => "AUTH_AES_128_GMAC",
        Aes192Gmac = 10 => "AUTH_AES_192_GMAC",
        Aes256Gmac = 11 => "AUTH_AES_256_GMAC",
        HmacSha2_256_128 = 12 => "AUTH_HMAC_SHA2_256_128",
        HmacSha2_384_192 = 13 => "AUTH_HMAC_SHA2_384_192",
        HmacSha2_512_256 = 14 => "AUTH_HMAC_SHA2_512_256",
    }
}

registry! {
    /// Transform Type 4, key exchange methods (Diffie-Hellman groups; RFC 7296 §3.3.2,
    /// RFC 3526, RFC 5903, RFC 8031). Names follow the common `MODP_2048` / `ECP_384` style.
    DhGroup: u16 {
        None = 0 => "NONE",
        Modp768 = 1 => "MODP_768",
        Modp1024 = 2 => "MODP_1024",
        Modp1536 = 5 => "MODP_1536",
        Modp2048 = 14 => "MODP_2048",
        Modp3072 = 15 => "MODP_3072",
        Modp4096 = 16 => "MODP_4096",
        Modp6144 = 17 => "MODP_6144",
        Modp8192 = 18 => "MODP_8192",
        Ecp256 = 19 => "ECP_256",
        Ecp384 = 20 => "ECP_384",
        Ecp521 = 21 => "ECP_521",
        Modp1024S160 = 22 => "MODP_1024_160",
        Modp2048S224 = 23 => "MODP_2048_224",
        Modp2048S256 = 24 => "MODP_2048_256",
        Ecp192 = 25 => "ECP_192",
        Ecp224 = 26 => "ECP_224",
        Brainpool224 = 27 => "ECP_224_BP",
        Brainpool256 = 28 => "ECP_256_BP",
        Brainpool384 = 29 => "ECP_384_BP",
        Brainpool512 = 30 => "ECP_512_BP",
        Curve25519 = 31 => "CURVE_25519",
        Curve448 = 32 => "CURVE_448",
        Gost256 = 33 => "GOST3410_2012_256",
        Gost512 = 34 => "GOST3410_2012_512",
        MlKem512 = 35 => "ML_KEM_512",
        MlKem768 = 36 => "ML_KEM_768",
        MlKem1024 = 37 => "ML_KEM_1024",
    }
}

registry! {
    /// Transform Type 5, extended sequence numbers (RFC 7296 §3.3.2).
    EsnId: u16 {
        NoEsn = 0 => "NO_ESN",
        Esn = 1 => "ESN",
    }
}

registry! {
    /// Identification types (RFC 7296 §3.5).
    IdType: u8 {
        Ipv4Addr = 1 => "ID_IPV4_ADDR",
        Fqdn = 2 => "ID_FQDN",
        Rfc822Addr = 3 => "ID_RFC822_ADDR",
        Ipv6Addr = 5 => "ID_IPV6_ADDR",
        DerAsn1Dn = 9 => "ID_DER_ASN1_DN",
        DerAsn1Gn = 10 => "ID_DER_ASN1_GN",
        KeyId = 11 => "ID_KEY_ID",
        FcName = 12 => "ID_FC_NAME",
        Null = 13 => "ID_NULL",
    }
}

registry! {
    /// Certificate encodings (RFC 7296 §3.6, RFC 7670).
    CertEncoding: u8 {
        Pkcs7X509 = 1 => "PKCS7_WRAPPED_X509",
        Pgp = 2 => "PGP",
        DnsSignedKey = 3 => "DNS_SIGNED_KEY",
        X509Signature = 4 => "X509_CERT_SIGNATURE",
        Kerberos = 6 => "KERBEROS_TOKEN",
        Crl = 7 => "CRL",
        Arl = 8 => "ARL",
        Spki = 9 => "SPKI",
        X509Attribute = 10 => "X509_CERT_ATTRIBUTE",
        RawRsaKey = 11 => "RAW_RSA_KEY",
        HashUrlX509Cert = 12 => "HASH_URL_X509_CERT",
        HashUrlX509Bundle = 13 => "HASH_URL_X509_BUNDLE",
        OcspContent = 14 => "OCSP_CONTENT",
        RawPublicKey = 15 => "RAW_PUBLIC_KEY",
    }
}

registry! {
    /// Authentication methods (RFC 7296 §3.8, RFC 4754, RFC 7427).
    AuthMethod: u8 {
        RsaSig = 1 => "RSA_SIG",
        SharedKeyMic = 2 => "SHARED_KEY_MIC",
        DssSig = 3 => "DSS_SIG",
        EcdsaSha256P256 = 9 => "ECDSA_SHA256_P256",
        EcdsaSha384P384 = 10 => "ECDSA_SHA384_P384",
        EcdsaSha512P521 = 11 => "ECDSA_SHA512_P521",
        GenericSecurePassword = 12 => "GSPAM",
        NullAuth = 13 => "NULL_AUTH",
        DigitalSignature = 14 => "DIGITAL_SIGNATURE",
    }
}

registry! {
    /// Traffic selector types (RFC 7296 §3.13.1, RFC 4595, RFC 9478).
    TsType: u8 {
        Ipv4AddrRange = 7 => "TS_IPV4_ADDR_RANGE",
        Ipv6AddrRange = 8 => "TS_IPV6_ADDR_RANGE",
        FcAddrRange = 9 => "TS_FC_ADDR_RANGE",
        SecLabel = 10 => "TS_SECLABEL",
    }
}

registry! {
    /// Configuration payload types (RFC 7296 §3.15).
    CfgType: u8 {
        Request = 1 => "CFG_REQUEST",
        Reply = 2 => "CFG_REPLY",
        Set = 3 => "CFG_SET",
        Ack = 4 => "CFG_ACK",
    }
}

registry! {
    /// Configuration attribute types (RFC 7296 §3.15.1 and later registrations).
    CfgAttributeType: u16 {
        InternalIp4Address = 1 => "INTERNAL_IP4_ADDRESS",
        InternalIp4Netmask = 2 => "INTERNAL_IP4_NETMASK",
        InternalIp4Dns = 3 => "INTERNAL_IP4_DNS",
        InternalIp4Nbns = 4 => "INTERNAL_IP4_NBNS",
        InternalIp4Dhcp = 6 => "INTERNAL_IP4_DHCP",
        ApplicationVersion = 7 => "APPLICATION_VERSION",
        InternalIp6Address = 8 => "INTERNAL_IP6_ADDRESS",
        InternalIp6Dns = 10 => "INTERNAL_IP6_DNS",
        InternalIp6Dhcp = 12 => "INTERNAL_IP6_DHCP",
        InternalIp4Subnet = 13 => "INTERNAL_IP4_SUBNET",
        SupportedAttributes = 14 => "SUPPORTED_ATTRIBUTES",
        InternalIp6Subnet = 15 => "INTERNAL_IP6_SUBNET",
        Mip6HomePrefix = 16 => "MIP6_HOME_PREFIX",
        InternalIp6Link = 17 => "INTERNAL_IP6_LINK",
        InternalIp6Prefix = 18 => "INTERNAL_IP6_PREFIX",
        HomeAgentAddress = 19 => "HOME_AGENT_ADDRESS",
        PCscfIp4Address = 20 => "P_CSCF_IP4_ADDRESS",
        PCscfIp6Address = 21 => "P_CSCF_IP6_ADDRESS",
        FttKat = 22 => "FTT_KAT",
        ExternalSourceIp4NatInfo = 23 => "EXTERNAL_SOURCE_IP4_NAT_INFO",
        TimeoutPeriodForLivenessCheck = 24 => "TIMEOUT_PERIOD_FOR_LIVENESS_CHECK",
        InternalDnsDomain = 25 => "INTERNAL_DNS_DOMAIN",
        InternalDnssecTa = 26 => "INTERNAL_DNSSEC_TA",
    }
}

registry! {
    /// Transform attribute types (RFC 7296 §3.3.5); only Key Length is defined.
    AttributeType: u16 {
        KeyLength = 14 => "KEY_LENGTH",
    }
}

registry! {
    /// Hash algorithms for the `SIGNATURE_HASH_ALGORITHMS` notify (RFC 7427 §4, RFC 8420).
    HashAlgorithm: u16 {
        Sha1 = 1 => "SHA1",
        Sha2_256 = 2 => "SHA2_256",
        Sha2_384 = 3 => "SHA2_384",
        Sha2_512 = 4 => "SHA2_512",
        Identity = 5 => "IDENTITY",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_values_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(ExchangeType::from(v)), v);
            assert_eq!(u8::from(PayloadType::from(v)), v);
        }
        for v in 0..=1000u16 {
            assert_eq!(u16::from(EncrId::from(v)), v);
            assert_eq!(u16::from(DhGroup::from(v)), v);
        }
    }

    #[test]
    fn display_uses_iana_names() {
        assert_eq!(ExchangeType::IkeSaInit.to_string(), "IKE_SA_INIT");
        assert_eq!(EncrId::from(20).to_string(), "ENCR_AES_GCM_16");
        assert_eq!(PrfId::from(6).to_string(), "PRF_HMAC_SHA2_384");
        assert_eq!(IntegId::from(14).to_string(), "AUTH_HMAC_SHA2_512_256");
        assert_eq!(DhGroup::from(31).to_string(), "CURVE_25519");
        assert_eq!(AuthMethod::from(14).to_string(), "DIGITAL_SIGNATURE");
        assert_eq!(PayloadType::from(200).to_string(), "UNKNOWN(200)");
    }

    #[test]
    fn equality_goes_by_wire_value() {
        assert_eq!(EncrId::Unknown(12), EncrId::AesCbc);
        assert_eq!(EncrId::Unknown(12).name(), Some("ENCR_AES_CBC"));
        assert_ne!(EncrId::Unknown(99), EncrId::AesCbc);
    }
}
