//! Where the agent keeps things on each OS, and what an installer left for it.
//!
//! Windows: state, config and logs live in `%ProgramData%\Caretaker` (`agent.toml`,
//! `identity.json`, the journal, `enroll-token`, `logs\`). The MSI (or `service install`)
//! writes the collector address and the enrolment token to `HKLM\SOFTWARE\Caretaker\Agent`
//! (`Collector`, `EnrollToken`). When the agent runs elevated it locks the state directory
//! down to SYSTEM and Administrators and moves the token out of the registry (readable by
//! every user) into `enroll-token` inside that directory.
//!
//! Elsewhere: nothing is implied; `--state-dir` and `--collector` (or a config file) are
//! needed, and the state directory is created 0700.

use std::path::{Path, PathBuf};

use crate::config::Secret;

/// Values the machine supplies when neither a flag nor the config file gives them.
#[derive(Debug, Default, Clone)]
pub struct MachineDefaults {
    /// Config file read when `--config` is not given and it exists.
    pub config_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub collector: Option<String>,
    pub enroll_token: Option<Secret>,
}

/// The token file inside a state directory.
pub const TOKEN_FILE: &str = "enroll-token";

#[cfg(windows)]
pub use windows_impl::*;

#[cfg(not(windows))]
pub fn machine_defaults() -> MachineDefaults {
    MachineDefaults::default()
}

/// Creates the state directory, private to the agent's account (0700).
#[cfg(not(windows))]
pub fn prepare_state_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Reads a token file left by an installer, if there is one.
pub fn token_in(dir: &Path) -> Option<Secret> {
    let text = std::fs::read_to_string(dir.join(TOKEN_FILE)).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| Secret::new(t))
}

#[cfg(windows)]
mod windows_impl {
    use std::io;
    use std::path::{Path, PathBuf};

    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_SET_VALUE, KEY_WOW64_64KEY};

    use super::{MachineDefaults, TOKEN_FILE, token_in};
    use crate::config::Secret;
    use crate::win32;

    pub const REGISTRY_KEY: &str = r"SOFTWARE\Caretaker\Agent";

    /// `%ProgramData%\Caretaker`, from the profile list in the registry (a service's
    /// environment may lack `ProgramData` or, under Wine, point it elsewhere), else the
    /// environment, else `C:\ProgramData`.
    pub fn data_dir() -> PathBuf {
        let from_registry = || {
            let key = RegKey::predef(HKEY_LOCAL_MACHINE)
                .open_subkey_with_flags(
                    r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList",
                    KEY_READ | KEY_WOW64_64KEY,
                )
                .ok()?;
            let v: String = key.get_value("ProgramData").ok()?;
            let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
            let v = v.replace("%SystemDrive%", &drive);
            (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()))
        };
        let base = from_registry()
            .or_else(|| std::env::var_os("ProgramData").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        base.join("Caretaker")
    }

    fn registry_string(name: &str) -> Option<String> {
        let key = RegKey::predef(HKEY_LOCAL_MACHINE)
            .open_subkey_with_flags(REGISTRY_KEY, KEY_READ | KEY_WOW64_64KEY)
            .ok()?;
        let v: String = key.get_value(name).ok()?;
        let v = v.trim().to_owned();
        (!v.is_empty()).then_some(v)
    }

    pub fn machine_defaults() -> MachineDefaults {
        let dir = data_dir();
        let config = dir.join("agent.toml");
        MachineDefaults {
            config_file: config.exists().then_some(config),
            collector: registry_string("Collector"),
            enroll_token: token_in(&dir)
                .or_else(|| registry_string("EnrollToken").map(Secret::new)),
            state_dir: Some(dir),
        }
    }

    /// Writes the collector (and the token, into the private state directory) where
    /// [`machine_defaults`] finds them: what `service install` does instead of an MSI.
    pub fn store_settings(collector: Option<&str>, token: Option<&Secret>) -> io::Result<()> {
        if let Some(c) = collector {
            let (key, _) = RegKey::predef(HKEY_LOCAL_MACHINE)
                .create_subkey_with_flags(REGISTRY_KEY, KEY_SET_VALUE | KEY_WOW64_64KEY)?;
            key.set_value("Collector", &c)?;
        }
        if let Some(t) = token {
            let dir = data_dir();
            prepare_state_dir(&dir)?;
            std::fs::write(dir.join(TOKEN_FILE), t.expose())?;
        }
        Ok(())
    }

    /// Creates the state directory; when elevated, restricts it to SYSTEM and Administrators
    /// and moves an installer's token out of the registry into it.
    pub fn prepare_state_dir(dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        if !win32::is_elevated() {
            tracing::warn!(
                state_dir = %dir.display(),
                "Not running elevated: the state directory keeps its inherited permissions"
            );
            return Ok(());
        }
        win32::set_private_dacl(dir)?;
        if dir == data_dir() {
            adopt_registry_token(dir)?;
        }
        Ok(())
    }

    fn adopt_registry_token(dir: &Path) -> io::Result<()> {
        let Ok(key) = RegKey::predef(HKEY_LOCAL_MACHINE)
            .open_subkey_with_flags(REGISTRY_KEY, KEY_READ | KEY_SET_VALUE | KEY_WOW64_64KEY)
        else {
            return Ok(());
        };
        let Ok(token) = key.get_value::<String, _>("EnrollToken") else {
            return Ok(());
        };
        if !token.trim().is_empty() {
            std::fs::write(dir.join(TOKEN_FILE), token.trim())?;
            tracing::info!("Moved the enrolment token from the registry into the state directory");
        }
        key.delete_value("EnrollToken")?;
        Ok(())
    }
}
