//! The three clouds the fake serves, by the names the admin API, the
//! journal and the state file use.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cloud {
    Alibaba,
    Apsara,
    Baidu,
}

impl Cloud {
    pub fn name(self) -> &'static str {
        match self {
            Self::Alibaba => "alibaba",
            Self::Apsara => "apsara",
            Self::Baidu => "baidu",
        }
    }

    /// Any case; `apsarastack` names Apsara too.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "alibaba" => Some(Self::Alibaba),
            "apsara" | "apsarastack" => Some(Self::Apsara),
            "baidu" => Some(Self::Baidu),
            _ => None,
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Cloud {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Cloud {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).ok_or_else(|| D::Error::custom(format!("unknown provider {name:?}")))
    }
}
