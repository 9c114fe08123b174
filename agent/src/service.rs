//! The Windows service: `caretaker-agent service install|uninstall|start|stop|status`, and the
//! service side of `caretaker-agent run`.
//!
//! `run` first offers itself to the service control manager ([`dispatch`]). Started by the SCM,
//! the agent runs as the `CaretakerAgent` service: the control handler turns Stop, Shutdown and
//! Preshutdown into a cancel of the same `CancellationToken` that Ctrl-C cancels in console
//! mode, so both take one shutdown path (collection stops, a bounded final flush, the journal
//! is synced). Started from a console, the dispatcher fails with ERROR_FAILED_SERVICE_
//! CONTROLLER_CONNECT (1063) and `run` carries on as a console program.
//!
//! Recovery actions are set in code (restart after 10 s, 1 min, 5 min; counter reset after a
//! day; also on a non-zero exit), at install and again at every service start, because an MSI
//! built with wixl cannot set them (no ServiceConfig table).

use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::config::Secret;
use crate::{platform, win32};

pub const SERVICE_NAME: &str = "CaretakerAgent";
pub const DISPLAY_NAME: &str = "Caretaker agent";
const DESCRIPTION: &str =
    "Reports this PC's inventory and status to the school's Caretaker collector.";
/// How long `service start|stop|uninstall` wait for the service to get there.
const STATE_WAIT: Duration = Duration::from_secs(30);
/// What the agent tells the SCM a stop may take (final flush + journal sync, with margin).
const STOP_WAIT_HINT: Duration = Duration::from_secs(15);
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("managing the service needs administrator rights: run this from an elevated prompt")]
    NotElevated,
    #[error("the {SERVICE_NAME} service is not installed")]
    NotInstalled,
    #[error("{what}: {source}")]
    Windows {
        what: &'static str,
        #[source]
        source: windows_service::Error,
    },
    #[error("the service did not reach {wanted:?} within {STATE_WAIT:?} (it is {now:?})")]
    Timeout {
        wanted: ServiceState,
        now: ServiceState,
    },
    #[error("cannot store the agent's settings")]
    Settings(#[source] std::io::Error),
}

fn win(what: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |source| {
        if let windows_service::Error::Winapi(e) = &source
            && e.raw_os_error() == Some(1060)
        {
            return ServiceError::NotInstalled; // ERROR_SERVICE_DOES_NOT_EXIST
        }
        if let windows_service::Error::Winapi(e) = &source
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            return ServiceError::NotElevated;
        }
        ServiceError::Windows { what, source }
    }
}

// ---- the service side of `run` --------------------------------------------------------------

/// The agent's work: runs until the token fires; returns the process exit code.
pub type Work = Box<dyn FnOnce(CancellationToken) -> u8 + Send>;

static WORK: Mutex<Option<Work>> = Mutex::new(None);
static EXIT: Mutex<u8> = Mutex::new(0);
static IN_SERVICE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the SCM started this process (set before the service's work begins).
pub fn running_as_service() -> bool {
    IN_SERVICE.load(std::sync::atomic::Ordering::SeqCst)
}

pub enum Dispatch {
    /// The SCM started us and the service has stopped; exit with this code.
    Ran(u8),
    /// Not started by the SCM: run `Work` as a console program.
    Console(Work),
}

/// Hands `work` to the service control manager if it started this process.
pub fn dispatch(work: Work) -> Dispatch {
    *lock(&WORK) = Some(work);
    match win32::run_service_dispatcher(SERVICE_NAME) {
        Ok(()) => Dispatch::Ran(*lock(&EXIT)),
        Err(e) => {
            let console = matches!(&e, windows_service::Error::Winapi(io)
                if io.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT));
            if !console {
                eprintln!(
                    "caretaker-agent: cannot start as a service ({e}); running in the console"
                );
            }
            match lock(&WORK).take() {
                Some(work) => Dispatch::Console(work),
                None => Dispatch::Ran(*lock(&EXIT)),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a control request does. Stop, Shutdown and Preshutdown all cancel `shutdown`, the
/// token Ctrl-C cancels in console mode.
pub fn on_control(
    control: ServiceControl,
    shutdown: &CancellationToken,
) -> ServiceControlHandlerResult {
    match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            shutdown.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    }
}

fn status(state: ServiceState, exit: u8, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if exit == 0 {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(u32::from(exit))
        },
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

/// Called on the SCM's thread by the dispatcher (see `win32::run_service_dispatcher`).
pub fn service_main(_args: Vec<OsString>) {
    let Some(work) = lock(&WORK).take() else {
        return;
    };
    IN_SERVICE.store(true, std::sync::atomic::Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let handler_token = shutdown.clone();
    let handle = match service_control_handler::register(SERVICE_NAME, move |c| {
        on_control(c, &handler_token)
    }) {
        Ok(h) => h,
        Err(error) => {
            tracing::error!(%error, "Cannot register the service control handler");
            *lock(&EXIT) = 1;
            return;
        }
    };
    let _ = handle.set_service_status(status(
        ServiceState::StartPending,
        0,
        Duration::from_secs(10),
    ));
    if let Err(error) = ensure_recovery_actions() {
        tracing::warn!(%error, "Cannot set the service's recovery actions");
    }
    let _ = handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO));

    // The work runs on its own thread so this one can say "stop pending" as soon as the SCM
    // asks, then "stopped" once the agent has flushed and synced.
    let token = shutdown.clone();
    let worker = std::thread::spawn(move || work(token));
    while !shutdown.is_cancelled() && !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if shutdown.is_cancelled() {
        let _ = handle.set_service_status(status(ServiceState::StopPending, 0, STOP_WAIT_HINT));
    }
    let code = worker.join().unwrap_or(1);
    *lock(&EXIT) = code;
    let _ = handle.set_service_status(status(ServiceState::Stopped, code, Duration::ZERO));
}

// ---- install / uninstall / start / stop -----------------------------------------------------

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ServiceError> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(win("cannot open the service manager"))
}

fn recovery() -> ServiceFailureActions {
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart(10), restart(60), restart(300)]),
    }
}

fn set_recovery(service: &windows_service::service::Service) -> Result<(), ServiceError> {
    service
        .update_failure_actions(recovery())
        .map_err(win("cannot set recovery actions"))?;
    // Restart on a non-zero exit too, not only on a crash. Not every service manager has this
    // setting (Wine's has not): the crash restarts above still apply.
    if let Err(error) = service.set_failure_actions_on_non_crash_failures(true) {
        tracing::warn!(%error, "Cannot enable recovery on non-crash failures");
    }
    Ok(())
}

fn ensure_recovery_actions() -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let s = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::START,
        )
        .map_err(win("cannot open the service"))?;
    set_recovery(&s)
}

/// Installs (or updates) the service for `exe`, with the collector and token stored where
/// `run` finds them. Idempotent.
pub fn install(
    exe: &Path,
    collector: Option<&str>,
    token: Option<&Secret>,
) -> Result<(), ServiceError> {
    if !win32::is_elevated() {
        return Err(ServiceError::NotElevated);
    }
    platform::store_settings(collector, token).map_err(ServiceError::Settings)?;
    let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_owned(),
        launch_arguments: vec!["run".into()],
        dependencies: Vec::new(),
        account_name: None, // LocalSystem
        account_password: None,
    };
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::CHANGE_CONFIG | ServiceAccess::START;
    let service = match m.open_service(SERVICE_NAME, access) {
        Ok(existing) => {
            existing
                .change_config(&info)
                .map_err(win("cannot update the service"))?;
            existing
        }
        Err(_) => m
            .create_service(&info, access)
            .map_err(win("cannot create the service"))?,
    };
    if let Err(error) = service.set_description(DESCRIPTION) {
        tracing::debug!(%error, "Cannot set the service description");
    }
    set_recovery(&service)
}

pub fn uninstall() -> Result<(), ServiceError> {
    if !win32::is_elevated() {
        return Err(ServiceError::NotElevated);
    }
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let s = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(win("cannot open the service"))?;
    if s.query_status()
        .map_err(win("cannot query the service"))?
        .current_state
        != ServiceState::Stopped
    {
        let _ = s.stop();
        wait_for(&s, ServiceState::Stopped)?;
    }
    s.delete().map_err(win("cannot delete the service"))
}

pub fn start() -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let s = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::START,
        )
        .map_err(win("cannot open the service"))?;
    if s.query_status()
        .map_err(win("cannot query the service"))?
        .current_state
        == ServiceState::Running
    {
        return Ok(());
    }
    s.start::<&str>(&[])
        .map_err(win("cannot start the service"))?;
    wait_for(&s, ServiceState::Running)
}

pub fn stop() -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let s = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP,
        )
        .map_err(win("cannot open the service"))?;
    if s.query_status()
        .map_err(win("cannot query the service"))?
        .current_state
        == ServiceState::Stopped
    {
        return Ok(());
    }
    s.stop().map_err(win("cannot stop the service"))?;
    wait_for(&s, ServiceState::Stopped)
}

/// The service's state, e.g. `Running`.
pub fn state() -> Result<ServiceState, ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let s = m
        .open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS)
        .map_err(win("cannot open the service"))?;
    Ok(s.query_status()
        .map_err(win("cannot query the service"))?
        .current_state)
}

fn wait_for(
    s: &windows_service::service::Service,
    wanted: ServiceState,
) -> Result<(), ServiceError> {
    let deadline = Instant::now() + STATE_WAIT;
    loop {
        let now = s
            .query_status()
            .map_err(win("cannot query the service"))?
            .current_state;
        if now == wanted {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ServiceError::Timeout { wanted, now });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_shutdown_and_preshutdown_take_the_ctrl_c_path() {
        for control in [
            ServiceControl::Stop,
            ServiceControl::Shutdown,
            ServiceControl::Preshutdown,
        ] {
            let token = CancellationToken::new();
            assert!(matches!(
                on_control(control, &token),
                ServiceControlHandlerResult::NoError
            ));
            assert!(token.is_cancelled(), "{control:?}");
        }
        let token = CancellationToken::new();
        assert!(matches!(
            on_control(ServiceControl::Interrogate, &token),
            ServiceControlHandlerResult::NoError
        ));
        assert!(matches!(
            on_control(ServiceControl::Pause, &token),
            ServiceControlHandlerResult::NotImplemented
        ));
        assert!(!token.is_cancelled());
    }

    #[test]
    fn recovery_restarts_three_times_and_resets_daily() {
        let r = recovery();
        let actions = r.actions.unwrap();
        assert_eq!(actions.len(), 3);
        assert!(
            actions
                .iter()
                .all(|a| a.action_type == ServiceActionType::Restart)
        );
        assert_eq!(actions[0].delay, Duration::from_secs(10));
        assert!(
            matches!(r.reset_period, ServiceFailureResetPeriod::After(d) if d == Duration::from_secs(86_400))
        );
    }

    #[test]
    fn status_reports_the_exit_code() {
        let s = status(ServiceState::Stopped, 78, Duration::ZERO);
        assert_eq!(s.exit_code, ServiceExitCode::ServiceSpecific(78));
        let s = status(ServiceState::Running, 0, Duration::ZERO);
        assert!(s.controls_accepted.contains(ServiceControlAccept::STOP));
    }
}
