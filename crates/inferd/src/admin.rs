//! `inferd keys` and `inferd accounts`: credentials are made on the server's
//! machine, against the same data directory `serve` uses, so no HTTP route
//! can mint the first one.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use inferd_store::{time, Role, Store};

use crate::config::FileConfig;

/// Where the credentials go: the same place `serve` looks, found the same way
/// (flag or env, then the config file's `data_dir`, then ./data), so a key is
/// never made where the server will not see it.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The data directory `serve` uses (default: the config file's `data_dir`, else ./data).
    #[arg(long, env = "INFERD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The TOML file `serve` reads; its `data_dir` applies when no flag sets one.
    #[arg(long, env = "INFERD_CONFIG")]
    config: Option<PathBuf>,
}

impl DataDir {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let file = FileConfig::read(self.config.as_deref())?;
        Ok(file.data_dir.unwrap_or_else(|| PathBuf::from("./data")))
    }

    fn open(&self) -> anyhow::Result<Store> {
        let dir = self.dir()?;
        Store::open(&dir).with_context(|| format!("opening the data directory {}", dir.display()))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Lists and reads.
    Read,
    /// Runs inference (and reads).
    User,
    /// Manages models, services, the catalog and the cache (and everything else).
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Read => Role::Read,
            RoleArg::User => Role::User,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Makes an API key and prints it once (only its SHA-256 is kept).
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label to tell keys apart in `keys list`.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Lists keys (never the keys themselves).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revokes a key by its id; a running server stops accepting it within a second.
    Revoke {
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Subcommand)]
pub enum Accounts {
    /// Makes a ZStack login account (password hashed with argon2).
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "admin")]
        role: RoleArg,
        /// The password; read from the first line of stdin when not given.
        #[arg(long, env = "INFERD_ACCOUNT_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
}

pub fn keys(cmd: Keys) -> anyhow::Result<()> {
    match cmd {
        Keys::Create { role, name, data } => {
            let (info, key) = data.open()?.create_key(role.into(), &name)?;
            eprintln!(
                "created {} key {} (store it now: it is not shown again)",
                info.role.as_str(),
                info.id
            );
            println!("{key}");
        }
        Keys::List { data } => {
            println!(
                "{:<16} {:<6} {:<22} {:<22} name",
                "id", "role", "created", "revoked"
            );
            for k in data.open()?.list_keys()? {
                println!(
                    "{:<16} {:<6} {:<22} {:<22} {}",
                    k.id,
                    k.role.as_str(),
                    time::rfc3339(k.created_at),
                    k.revoked_at
                        .map(time::rfc3339)
                        .unwrap_or_else(|| "-".into()),
                    k.name
                );
            }
        }
        Keys::Revoke { id, data } => {
            if !data.open()?.revoke_key(&id)? {
                anyhow::bail!("no active key has the id '{id}' (see `inferd keys list`)");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

pub fn accounts(cmd: Accounts) -> anyhow::Result<()> {
    let Accounts::Create {
        name,
        role,
        password,
        data,
    } = cmd;
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if name.trim().is_empty() || password.is_empty() {
        anyhow::bail!("an account needs a name and a non-empty password");
    }
    match data.open()?.create_account(&name, &password, role.into())? {
        Some(uuid) => eprintln!("created account '{name}' ({uuid})"),
        None => anyhow::bail!("an account named '{name}' already exists"),
    }
    Ok(())
}
