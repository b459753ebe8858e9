//! The configuration of a function, read once from the environment at start-up. A variable that
//! is missing or cannot be used is an error naming it.

use patchflow_connectors::settings::{ConnectorsFile, PagerChoice};
use std::collections::BTreeMap;

use patchflow_core::policy::Policy;
use patchflow_core::ports::queue::Stage;
#[cfg(any(test, feature = "simulation"))]
use patchflow_sim::connectors::Outcomes;

use crate::wiring::{System, Wiring};

pub use patchflow_aws::config::{EVIDENCE_BUCKET, STATE_TABLE};

/// Whether this build carries the simulated RMM, PSA and pager (the `simulation` feature, which
/// a simulation deployment's package is built with; this crate's own tests have them too).
pub const SIMULATION_BUILT: bool = cfg!(any(test, feature = "simulation"));

/// The variable holding a stage queue's URL (`!Ref` of the queue in the template): a function
/// reads the URL of each queue it sends to or consumes, so that it starts without asking SQS.
pub fn queue_url_variable(stage: Stage) -> &'static str {
    match stage {
        Stage::Approval => "PATCHFLOW_APPROVAL_QUEUE_URL",
        Stage::Rollout => "PATCHFLOW_ROLLOUT_QUEUE_URL",
        Stage::Schedule => "PATCHFLOW_SCHEDULE_QUEUE_URL",
        Stage::Failure => "PATCHFLOW_FAILURE_QUEUE_URL",
        Stage::Evidence => "PATCHFLOW_EVIDENCE_QUEUE_URL",
    }
}

/// The variable holding a stage's dead-letter queue URL, read by the stage's consumer (where
/// it moves poison messages).
pub fn dlq_url_variable(stage: Stage) -> &'static str {
    match stage {
        Stage::Approval => "PATCHFLOW_APPROVAL_DLQ_URL",
        Stage::Rollout => "PATCHFLOW_ROLLOUT_DLQ_URL",
        Stage::Schedule => "PATCHFLOW_SCHEDULE_DLQ_URL",
        Stage::Failure => "PATCHFLOW_FAILURE_DLQ_URL",
        Stage::Evidence => "PATCHFLOW_EVIDENCE_DLQ_URL",
    }
}

/// The inventory file inventory-sync reads (JSON, or CSV by its `.csv` extension), with the
/// simulation; `connectwise` pulls the inventory from Automate.
pub const INVENTORY_PATH: &str = "PATCHFLOW_INVENTORY_PATH";
/// The month's catalog file inventory-sync reads; `{cycle}` in it is replaced by `YYYY-MM`. With
/// `connectwise` it is optional and holds the third-party patches merged into Microsoft's.
pub const CATALOG_PATH: &str = "PATCHFLOW_CATALOG_PATH";
/// Which RMM, PSA and pager the functions drive: `connectwise` (the stack's default) or
/// `simulation` (a sandbox's explicit choice; also what an unset variable means, so a test or a
/// local run never reaches a real system by accident).
pub const CONNECTORS: &str = "PATCHFLOW_CONNECTORS";
/// The connectors file (TOML, see docs/connectors.md), needed by `connectwise`.
pub const CONNECTORS_CONFIG: &str = "PATCHFLOW_CONNECTORS_CONFIG";
/// The SNS topic the pager publishes to when the connectors file says `[pager] kind = "sns"`.
pub const PAGER_TOPIC_ARN: &str = "PATCHFLOW_PAGER_TOPIC_ARN";
/// An optional TOML policy overriding the operating model's defaults.
pub const POLICY_PATH: &str = "PATCHFLOW_POLICY_PATH";
/// The simulation's seed (an unsigned integer, default [`DEFAULT_SIM_SEED`]).
pub const SIM_SEED: &str = "PATCHFLOW_SIM_SEED";
/// The simulation's share of first installs that fail (0 to 1, default
/// [`DEFAULT_SIM_FAILURE_RATE`]).
pub const SIM_FAILURE_RATE: &str = "PATCHFLOW_SIM_FAILURE_RATE";

/// How many days evidence objects are locked (COMPLIANCE mode), default
/// [`DEFAULT_RETENTION_DAYS`].
pub const EVIDENCE_RETENTION_DAYS: &str = "PATCHFLOW_EVIDENCE_RETENTION_DAYS";
/// The evidence retention when [`EVIDENCE_RETENTION_DAYS`] is not set: seven years, as the
/// bucket's default retention.
pub const DEFAULT_RETENTION_DAYS: i64 = 2555;

/// The RMM's base URL (ConnectWise Automate), for the RMM connector.
pub const RMM_BASE_URL: &str = "PATCHFLOW_RMM_BASE_URL";
/// The Secrets Manager ARN of the RMM's credentials.
pub const RMM_SECRET_ARN: &str = "PATCHFLOW_RMM_SECRET_ARN";
/// The Secrets Manager ARN of the PSA's credentials.
pub const PSA_SECRET_ARN: &str = "PATCHFLOW_PSA_SECRET_ARN";
/// The Secrets Manager ARN of the pager's routing key.
pub const PAGER_SECRET_ARN: &str = "PATCHFLOW_PAGER_SECRET_ARN";

/// Every variable the configuration reads.
pub const READS: &[&str] = &[
    EVIDENCE_BUCKET,
    STATE_TABLE,
    "PATCHFLOW_APPROVAL_QUEUE_URL",
    "PATCHFLOW_APPROVAL_DLQ_URL",
    "PATCHFLOW_ROLLOUT_QUEUE_URL",
    "PATCHFLOW_ROLLOUT_DLQ_URL",
    "PATCHFLOW_SCHEDULE_QUEUE_URL",
    "PATCHFLOW_SCHEDULE_DLQ_URL",
    "PATCHFLOW_FAILURE_QUEUE_URL",
    "PATCHFLOW_FAILURE_DLQ_URL",
    "PATCHFLOW_EVIDENCE_QUEUE_URL",
    "PATCHFLOW_EVIDENCE_DLQ_URL",
    INVENTORY_PATH,
    CATALOG_PATH,
    CONNECTORS,
    CONNECTORS_CONFIG,
    PAGER_TOPIC_ARN,
    POLICY_PATH,
    EVIDENCE_RETENTION_DAYS,
    SIM_SEED,
    SIM_FAILURE_RATE,
    RMM_BASE_URL,
    RMM_SECRET_ARN,
    PSA_SECRET_ARN,
    PAGER_SECRET_ARN,
];

/// The variables every function needs (besides its queues' URLs, [`Wiring::required`]).
pub const REQUIRED: &[&str] = &[EVIDENCE_BUCKET, STATE_TABLE];

/// The simulation's seed when [`SIM_SEED`] is not set.
pub const DEFAULT_SIM_SEED: u64 = 42;
/// The simulation's failure rate when [`SIM_FAILURE_RATE`] is not set.
pub const DEFAULT_SIM_FAILURE_RATE: f64 = 0.05;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or is empty).
    #[error("environment variable {name} is not set{hint}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// What it is for, as a clause starting with `: ` (or empty).
        hint: String,
    },
    /// A variable has a value that cannot be used.
    #[error("environment variable {name}: {message}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The RMM, PSA and pager the functions drive.
#[derive(Debug, Clone)]
pub enum Connectors {
    /// The simulated RMM, PSA and pager of `patchflow-sim`, with these outcomes (only in a
    /// build with the `simulation` feature).
    #[cfg(any(test, feature = "simulation"))]
    Simulation(Outcomes),
    /// ConnectWise Automate and PSA, PagerDuty or SNS, Microsoft's release, per this file.
    ConnectWise(Box<ConnectorsFile>),
}

/// Everything a function reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The evidence bucket ([`EVIDENCE_BUCKET`]).
    pub evidence_bucket: String,
    /// The state table ([`STATE_TABLE`]).
    pub state_table: String,
    /// The stage queues' URLs that are set ([`queue_url_variable`]), by stage.
    pub queue_urls: BTreeMap<Stage, String>,
    /// The dead-letter queues' URLs that are set ([`dlq_url_variable`]), by stage.
    pub dlq_urls: BTreeMap<Stage, String>,
    /// The inventory file ([`INVENTORY_PATH`]), needed by inventory-sync only.
    pub inventory_path: Option<String>,
    /// The catalog file or template ([`CATALOG_PATH`]), needed by inventory-sync only.
    pub catalog_path: Option<String>,
    /// The connectors ([`CONNECTORS`]).
    pub connectors: Connectors,
    /// Where the connectors file was read from ([`CONNECTORS_CONFIG`]), with `connectwise`.
    pub connectors_path: Option<String>,
    /// The policy: [`POLICY_PATH`]'s, else the default.
    pub policy: Policy,
    /// Days evidence is locked ([`EVIDENCE_RETENTION_DAYS`]).
    pub retention_days: i64,
    /// Where the connectors find their systems and credentials.
    pub connections: Connections,
}

/// Where the credentials are (Secrets Manager ARNs) and the SNS pager's topic, as configured.
/// The RMM's address ([`RMM_BASE_URL`]) goes into the connectors file's `[automate]` when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// [`RMM_SECRET_ARN`].
    pub rmm_secret_arn: Option<String>,
    /// [`PSA_SECRET_ARN`].
    pub psa_secret_arn: Option<String>,
    /// [`PAGER_SECRET_ARN`].
    pub pager_secret_arn: Option<String>,
    /// [`PAGER_TOPIC_ARN`].
    pub pager_topic_arn: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, `None` when unset); an
    /// empty or blank value counts as unset. The policy file, if any, is read and checked now.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(lookup, SIMULATION_BUILT)
    }

    /// [`Config::from_lookup`] in a build that carries the simulation or not
    /// (`simulation_built`): without it, `simulation` (or an unset [`CONNECTORS`], which means
    /// it) is refused naming the feature.
    fn read(
        lookup: impl Fn(&str) -> Option<String>,
        simulation_built: bool,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str, what: &str| {
            get(name).ok_or_else(|| ConfigError::Missing {
                name,
                hint: format!(": {what}"),
            })
        };
        let evidence_bucket = required(EVIDENCE_BUCKET, "the S3 evidence bucket's name")?;
        let state_table = required(STATE_TABLE, "the DynamoDB state table's name")?;
        let urls = |variable: fn(Stage) -> &'static str| -> BTreeMap<Stage, String> {
            Stage::ALL
                .into_iter()
                .filter_map(|stage| get(variable(stage)).map(|url| (stage, url)))
                .collect()
        };
        let connectors_path = get(CONNECTORS_CONFIG);
        let connectors = match get(CONNECTORS).as_deref() {
            choice @ (None | Some("simulation")) if !simulation_built => {
                return Err(ConfigError::Invalid {
                    name: CONNECTORS,
                    message: format!(
                        "{} this binary was built without the simulated RMM, PSA and pager \
                         (the `simulation` feature: `make package SIMULATION=1`); set it to \
                         `connectwise`",
                        match choice {
                            None => "unset means `simulation`, but",
                            _ => "`simulation`:",
                        }
                    ),
                })
            }
            None | Some("simulation") => simulation(get(SIM_SEED), get(SIM_FAILURE_RATE))?,
            Some("connectwise") => {
                let path = required(
                    CONNECTORS_CONFIG,
                    "PATCHFLOW_CONNECTORS=connectwise reads the connectors file from it",
                )?;
                let mut file =
                    ConnectorsFile::read(&path).map_err(|message| ConfigError::Invalid {
                        name: CONNECTORS_CONFIG,
                        message,
                    })?;
                if let (Some(a), Some(url)) = (file.automate.as_mut(), get(RMM_BASE_URL)) {
                    a.base_url = url;
                }
                Connectors::ConnectWise(Box::new(file))
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: CONNECTORS,
                    message: format!(
                        "`{other}` is not a known set of connectors: `simulation` or `connectwise`"
                    ),
                })
            }
        };
        let policy = match get(POLICY_PATH) {
            None => Policy::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                    name: POLICY_PATH,
                    message: format!("cannot read {path}: {e}"),
                })?;
                Policy::from_toml(&path, &text).map_err(|e| ConfigError::Invalid {
                    name: POLICY_PATH,
                    message: e.to_string(),
                })?
            }
        };
        Ok(Self {
            evidence_bucket,
            state_table,
            queue_urls: urls(queue_url_variable),
            dlq_urls: urls(dlq_url_variable),
            inventory_path: get(INVENTORY_PATH),
            catalog_path: get(CATALOG_PATH),
            connectors,
            connectors_path,
            policy,
            retention_days: parse_days(get(EVIDENCE_RETENTION_DAYS))?,
            connections: Connections {
                rmm_secret_arn: get(RMM_SECRET_ARN),
                psa_secret_arn: get(PSA_SECRET_ARN),
                pager_secret_arn: get(PAGER_SECRET_ARN),
                pager_topic_arn: get(PAGER_TOPIC_ARN),
            },
        })
    }
}

impl Config {
    /// Checks, before anything is built, that the configuration gives `function` every system
    /// it talks to ([`Wiring::talks_to`]): with `connectwise`, the connectors file's section
    /// and the variable locating its credentials. The first one missing is the error, naming
    /// the variable or the file and section, the function and the system; a function started
    /// without what it needs would otherwise fail on its first message instead. The simulation
    /// needs nothing; systems a function does not talk to are not checked.
    pub fn check_systems(&self, function: &Wiring) -> Result<(), ConfigError> {
        #[allow(irrefutable_let_patterns)]
        let Connectors::ConnectWise(file) = &self.connectors
        else {
            return Ok(());
        };
        let path = self
            .connectors_path
            .as_deref()
            .unwrap_or("the connectors file");
        let name = function.name;
        let section = |section: &str, what: &str| ConfigError::Invalid {
            name: CONNECTORS_CONFIG,
            message: format!(
                "{path} has no [{section}] section, and {name} talks to {what} with \
                 PATCHFLOW_CONNECTORS=connectwise"
            ),
        };
        let variable = |variable: &'static str, what: &str, holds: &str| ConfigError::Missing {
            name: variable,
            hint: format!(": {name} talks to {what} and finds {holds} there"),
        };
        let c = &self.connections;
        for system in function.talks_to {
            match system {
                System::Rmm => {
                    let what = "the RMM (ConnectWise Automate)";
                    if file.automate.is_none() {
                        return Err(section("automate", what));
                    }
                    if c.rmm_secret_arn.is_none() {
                        return Err(variable(RMM_SECRET_ARN, what, "its credentials' secret"));
                    }
                }
                System::Psa => {
                    let what = "the PSA (ConnectWise PSA)";
                    if file.manage.is_none() {
                        return Err(section("manage", what));
                    }
                    if c.psa_secret_arn.is_none() {
                        return Err(variable(PSA_SECRET_ARN, what, "its credentials' secret"));
                    }
                }
                System::Pager => match &file.pager {
                    None => return Err(section("pager", "the pager")),
                    Some(PagerChoice::PagerDuty(_)) if c.pager_secret_arn.is_none() => {
                        return Err(variable(
                            PAGER_SECRET_ARN,
                            "the pager ([pager] kind = \"pagerduty\")",
                            "its routing key's secret",
                        ))
                    }
                    Some(PagerChoice::Sns {}) if c.pager_topic_arn.is_none() => {
                        return Err(variable(
                            PAGER_TOPIC_ARN,
                            "the pager ([pager] kind = \"sns\")",
                            "the SNS topic",
                        ))
                    }
                    Some(_) => {}
                },
            }
        }
        Ok(())
    }
}

fn parse_days(value: Option<String>) -> Result<i64, ConfigError> {
    match value {
        None => Ok(DEFAULT_RETENTION_DAYS),
        Some(v) => match v.parse::<i64>() {
            Ok(d) if (1..=36_500).contains(&d) => Ok(d),
            _ => Err(ConfigError::Invalid {
                name: EVIDENCE_RETENTION_DAYS,
                message: format!("`{v}` is not a number of days from 1 to 36500"),
            }),
        },
    }
}

/// The simulation's connectors, with the outcomes of [`SIM_SEED`] and [`SIM_FAILURE_RATE`].
#[cfg(any(test, feature = "simulation"))]
fn simulation(seed: Option<String>, rate: Option<String>) -> Result<Connectors, ConfigError> {
    Ok(Connectors::Simulation(Outcomes {
        seed: parse_seed(seed)?,
        failure_rate: parse_rate(rate)?,
    }))
}

/// Never called: [`Config::read`] refuses the simulation first in a build without it.
#[cfg(not(any(test, feature = "simulation")))]
fn simulation(_seed: Option<String>, _rate: Option<String>) -> Result<Connectors, ConfigError> {
    Err(ConfigError::Invalid {
        name: CONNECTORS,
        message: "this binary was built without the `simulation` feature".to_owned(),
    })
}

#[cfg(any(test, feature = "simulation"))]
fn parse_seed(value: Option<String>) -> Result<u64, ConfigError> {
    match value {
        None => Ok(DEFAULT_SIM_SEED),
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
            name: SIM_SEED,
            message: format!("`{v}` is not an unsigned integer"),
        }),
    }
}

#[cfg(any(test, feature = "simulation"))]
fn parse_rate(value: Option<String>) -> Result<f64, ConfigError> {
    match value {
        None => Ok(DEFAULT_SIM_FAILURE_RATE),
        Some(v) => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(ConfigError::Invalid {
                name: SIM_FAILURE_RATE,
                message: format!("`{v}` is not a number from 0 to 1"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: [(&str, &str); 2] = [(EVIDENCE_BUCKET, "pf-evidence"), (STATE_TABLE, "pf-state")];

    #[test]
    fn the_aws_names_are_required_and_the_rest_defaults() {
        let c = Config::from_lookup(vars(&BASE)).unwrap();
        assert_eq!(c.evidence_bucket, "pf-evidence");
        assert_eq!(c.state_table, "pf-state");
        assert!(c.queue_urls.is_empty() && c.dlq_urls.is_empty());
        assert!(c.inventory_path.is_none() && c.catalog_path.is_none());
        let Connectors::Simulation(o) = c.connectors else {
            panic!("{:?}", c.connectors)
        };
        assert_eq!(o.seed, DEFAULT_SIM_SEED);
        assert_eq!(c.retention_days, DEFAULT_RETENTION_DAYS);
        assert_eq!(c.policy.to_toml(), Policy::default().to_toml());
        for missing in BASE.map(|(k, _)| k) {
            let rest: Vec<_> = BASE.into_iter().filter(|(k, _)| *k != missing).collect();
            let e = Config::from_lookup(vars(&rest)).unwrap_err().to_string();
            assert!(e.contains(missing) && e.contains("not set"), "{e}");
        }
    }

    #[test]
    fn queue_urls_are_read_by_stage() {
        let mut v = BASE.to_vec();
        v.push((
            "PATCHFLOW_FAILURE_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/pf-failure",
        ));
        v.push((
            "PATCHFLOW_SCHEDULE_DLQ_URL",
            "http://127.0.0.1:5000/1/pf-schedule-dlq",
        ));
        v.push(("PATCHFLOW_EVIDENCE_QUEUE_URL", " "));
        let c = Config::from_lookup(vars(&v)).unwrap();
        assert_eq!(
            c.queue_urls.into_iter().collect::<Vec<_>>(),
            [(
                Stage::Failure,
                "https://sqs.us-east-1.amazonaws.com/1/pf-failure".to_owned()
            )]
        );
        assert_eq!(
            c.dlq_urls.into_iter().collect::<Vec<_>>(),
            [(
                Stage::Schedule,
                "http://127.0.0.1:5000/1/pf-schedule-dlq".to_owned()
            )]
        );
        for stage in Stage::ALL {
            assert!(READS.contains(&queue_url_variable(stage)), "{stage}");
            assert!(READS.contains(&dlq_url_variable(stage)), "{stage}");
        }
    }

    #[test]
    fn a_build_without_the_simulation_refuses_it_at_start_naming_the_feature() {
        // Set explicitly, or unset (which means the simulation).
        let mut explicit = BASE.to_vec();
        explicit.push((CONNECTORS, "simulation"));
        for v in [explicit, BASE.to_vec()] {
            let e = Config::read(vars(&v), false).unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(
                    e,
                    ConfigError::Invalid {
                        name: CONNECTORS,
                        ..
                    }
                ) && text.contains("built without the simulated RMM, PSA and pager")
                    && text.contains("`simulation` feature")
                    && text.contains("connectwise"),
                "{text}"
            );
            // The same configuration in a build with it starts on the simulation.
            let c = Config::read(vars(&v), true).unwrap();
            assert!(matches!(c.connectors, Connectors::Simulation(_)));
        }
        assert_eq!(SIMULATION_BUILT, cfg!(any(test, feature = "simulation")));
    }

    #[test]
    fn a_blank_value_is_unset() {
        let mut v = BASE.to_vec();
        v[1] = (STATE_TABLE, "  ");
        let e = Config::from_lookup(vars(&v)).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Missing {
                    name: STATE_TABLE,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_connectors_are_refused_naming_the_variable() {
        let mut v = BASE.to_vec();
        v.push((CONNECTORS, "kaseya"));
        let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
        assert!(
            e.contains(CONNECTORS) && e.contains("kaseya") && e.contains("connectwise"),
            "{e}"
        );
        v.pop();
        v.push((CONNECTORS, "simulation"));
        v.push((SIM_SEED, "7"));
        v.push((SIM_FAILURE_RATE, "0.5"));
        let Connectors::Simulation(o) = Config::from_lookup(vars(&v)).unwrap().connectors else {
            panic!("not the simulation")
        };
        assert_eq!((o.seed, o.failure_rate), (7, 0.5));
    }

    #[test]
    fn connectwise_reads_its_file_and_the_rmm_address_from_the_environment() {
        let mut v = BASE.to_vec();
        v.push((CONNECTORS, "connectwise"));
        let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
        assert!(
            e.contains(CONNECTORS_CONFIG) && e.contains("not set"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("connectors.toml");
        std::fs::write(
            &good,
            "[automate]\nbase_url = \"https://old.example.com\"\n[pager]\nkind = \"sns\"\n",
        )
        .unwrap();
        let good = good.display().to_string();
        v.push((CONNECTORS_CONFIG, &good));
        v.push((RMM_BASE_URL, "https://rmm.example.com"));
        v.push((PAGER_TOPIC_ARN, "arn:aws:sns:us-east-1:1:pages"));
        let c = Config::from_lookup(vars(&v)).unwrap();
        let Connectors::ConnectWise(file) = &c.connectors else {
            panic!("{:?}", c.connectors)
        };
        assert_eq!(
            file.automate.as_ref().unwrap().base_url,
            "https://rmm.example.com"
        );
        assert_eq!(
            c.connections.pager_topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:1:pages")
        );

        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[automate]\nbase_url = \"https://x\"\npage_sise = 3\n",
        )
        .unwrap();
        let bad = bad.display().to_string();
        let mut v = BASE.to_vec();
        v.push((CONNECTORS, "connectwise"));
        v.push((CONNECTORS_CONFIG, &bad));
        let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
        assert!(
            e.contains(CONNECTORS_CONFIG) && e.contains("bad.toml") && e.contains("page_sise"),
            "{e}"
        );
    }

    /// A `connectwise` configuration over a connectors file of `sections`, with `extra`
    /// variables.
    fn connectwise(
        dir: &std::path::Path,
        sections: &str,
        extra: &[(&'static str, &'static str)],
    ) -> Config {
        let file = dir.join("connectors.toml");
        std::fs::write(&file, sections).unwrap();
        let file = file.display().to_string();
        let mut v: Vec<(&str, &str)> = BASE.to_vec();
        v.push((CONNECTORS, "connectwise"));
        v.push((CONNECTORS_CONFIG, &file));
        v.extend_from_slice(extra);
        Config::from_lookup(vars(&v)).unwrap()
    }

    fn wiring(name: &str) -> &'static Wiring {
        crate::wiring::function(name).unwrap()
    }

    const ALL_SECTIONS: &str = "[automate]\nbase_url = \"https://rmm.example.com\"\n\
        [manage]\nbase_url = \"https://na.myconnectwise.net/v4_6_release/apis/3.0\"\n\
        board = \"Patching\"\n[pager]\nkind = \"pagerduty\"\n";

    const ALL_SECRETS: [(&str, &str); 3] = [
        (
            RMM_SECRET_ARN,
            "arn:aws:secretsmanager:us-east-1:1:secret:rmm",
        ),
        (
            PSA_SECRET_ARN,
            "arn:aws:secretsmanager:us-east-1:1:secret:psa",
        ),
        (
            PAGER_SECRET_ARN,
            "arn:aws:secretsmanager:us-east-1:1:secret:pager",
        ),
    ];

    #[test]
    fn a_function_for_real_systems_starts_only_with_every_system_it_talks_to_configured() {
        let dir = tempfile::tempdir().unwrap();
        // GIVEN every section and every secret: each of the six starts.
        let full = connectwise(dir.path(), ALL_SECTIONS, &ALL_SECRETS);
        for w in &crate::wiring::FUNCTIONS {
            full.check_systems(w)
                .unwrap_or_else(|e| panic!("{}: {e}", w.name));
        }

        // GIVEN a file with only [automate] and only the RMM's secret: the RMM-only function
        // starts; approval-eval fails naming the file, the section and itself (ring-promotion
        // and reboot-scheduler note the compliance tickets, so they need the PSA too).
        let rmm_only = connectwise(
            dir.path(),
            "[automate]\nbase_url = \"https://rmm.example.com\"\n",
            &ALL_SECRETS[..1],
        );
        rmm_only.check_systems(wiring("inventory-sync")).unwrap();
        for needs_psa in ["reboot-scheduler", "ring-promotion"] {
            assert!(
                rmm_only.check_systems(wiring(needs_psa)).is_err(),
                "{needs_psa}"
            );
        }
        let e = rmm_only.check_systems(wiring("approval-eval")).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    name: CONNECTORS_CONFIG,
                    ..
                }
            ) && text.contains("connectors.toml has no [manage] section")
                && text.contains("approval-eval talks to the PSA"),
            "{text}"
        );

        // GIVEN every section but a credential's variable missing: the function that needs it
        // fails naming the variable; the others start.
        for (missing, function) in [
            (RMM_SECRET_ARN, "reboot-scheduler"),
            (PSA_SECRET_ARN, "approval-eval"),
            (PAGER_SECRET_ARN, "failure-escalation"),
        ] {
            let rest: Vec<_> = ALL_SECRETS
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let c = connectwise(dir.path(), ALL_SECTIONS, &rest);
            let e = c.check_systems(wiring(function)).unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(e, ConfigError::Missing { name, .. } if name == missing)
                    && text.contains(function),
                "{text}"
            );
            // Those that do not talk to that system start.
            let others: Vec<_> = crate::wiring::FUNCTIONS
                .iter()
                .filter(|w| !w.talks_to.iter().any(|s| s.secret_variable() == missing))
                .collect();
            // Every function talks to the RMM (even failure-escalation: the retry window).
            assert!(!others.is_empty() || missing == RMM_SECRET_ARN, "{missing}");
            for w in others {
                c.check_systems(w).unwrap();
            }
        }

        // An SNS pager needs its topic, not a secret.
        let sns = ALL_SECTIONS.replace("pagerduty", "sns");
        let c = connectwise(dir.path(), &sns, &ALL_SECRETS[..2]);
        let e = c.check_systems(wiring("evidence-archiver")).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Missing {
                    name: PAGER_TOPIC_ARN,
                    ..
                }
            ),
            "{e}"
        );
        let c = connectwise(
            dir.path(),
            &sns,
            &[
                ALL_SECRETS[0],
                ALL_SECRETS[1],
                (PAGER_TOPIC_ARN, "arn:aws:sns:us-east-1:1:pages"),
            ],
        );
        c.check_systems(wiring("evidence-archiver")).unwrap();

        // The simulation needs nothing.
        let sim = Config::from_lookup(vars(&BASE)).unwrap();
        for w in &crate::wiring::FUNCTIONS {
            sim.check_systems(w).unwrap();
        }
    }

    #[test]
    fn a_connectors_file_that_is_not_there_stops_the_function_naming_the_variable_and_path() {
        let mut v = BASE.to_vec();
        v.push((CONNECTORS, "connectwise"));
        v.push((CONNECTORS_CONFIG, "/var/task/connectors.toml"));
        let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
        assert!(
            e.contains(CONNECTORS_CONFIG) && e.contains("/var/task/connectors.toml"),
            "{e}"
        );
    }

    #[test]
    fn bad_simulation_numbers_name_their_variable() {
        for (name, value) in [
            (SIM_SEED, "-1"),
            (SIM_FAILURE_RATE, "1.5"),
            (SIM_FAILURE_RATE, "x"),
            (EVIDENCE_RETENTION_DAYS, "0"),
            (EVIDENCE_RETENTION_DAYS, "7y"),
        ] {
            let mut v = BASE.to_vec();
            v.push((name, value));
            let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(value), "{e}");
        }
    }

    #[test]
    fn a_policy_file_is_read_and_its_errors_name_the_variable_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("policy.toml");
        std::fs::write(&good, "[rollout]\nsoak_days = 3\n").unwrap();
        let mut v = BASE.to_vec();
        let good_path = good.display().to_string();
        v.push((POLICY_PATH, &good_path));
        let c = Config::from_lookup(vars(&v)).unwrap();
        assert!(
            c.policy.to_toml().contains("soak_days = 3"),
            "{}",
            c.policy.to_toml()
        );

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[rollout]\nsoak_dayz = 3\n").unwrap();
        let bad_path = bad.display().to_string();
        v.pop();
        v.push((POLICY_PATH, &bad_path));
        let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
        assert!(e.contains(POLICY_PATH) && e.contains("soak_dayz"), "{e}");

        v.pop();
        v.push((POLICY_PATH, "/nonexistent/policy.toml"));
        let e = Config::from_lookup(vars(&v)).unwrap_err().to_string();
        assert!(
            e.contains(POLICY_PATH) && e.contains("/nonexistent/policy.toml"),
            "{e}"
        );
    }
}
