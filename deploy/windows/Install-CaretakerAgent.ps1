<#
.SYNOPSIS
  Installs or updates the Caretaker agent on this PC without the MSI: for a GPO computer
  start-up script, Intune "platform script", or by hand from an elevated PowerShell.

.DESCRIPTION
  Copies caretaker-agent.exe from a share to "C:\Program Files\Caretaker", then runs
  `caretaker-agent.exe service install` (the CaretakerAgent service: LocalSystem, automatic
  start, restart on failure) and `service start`. Safe to run at every boot: when the
  installed exe is already the share's version it only makes sure the service runs.

  The enrolment token is read from a file on the share (readable by "Domain Computers" only)
  and handed to the agent through the environment, never on a command line.

.EXAMPLE
  # GPO: Computer Configuration > Policies > Windows Settings > Scripts > Startup > PowerShell
  Install-CaretakerAgent.ps1 -Source \\server\caretaker$ -Collector http://caretaker.school.example:50051
#>
[CmdletBinding()]
param(
  # Folder holding caretaker-agent.exe and enroll-token.
  [Parameter(Mandatory = $true)] [string] $Source,
  # The collector's gRPC address.
  [Parameter(Mandatory = $true)] [string] $Collector,
  [string] $InstallDir = "$env:ProgramFiles\Caretaker"
)
$ErrorActionPreference = 'Stop'

$principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  throw 'Run this as SYSTEM (a start-up script) or from an elevated PowerShell.'
}

$sourceExe = Join-Path $Source 'caretaker-agent.exe'
$exe = Join-Path $InstallDir 'caretaker-agent.exe'
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null

$current = if (Test-Path $exe) { (Get-FileHash $exe).Hash } else { '' }
$wanted = (Get-FileHash $sourceExe).Hash
if ($current -ne $wanted) {
  if (Get-Service CaretakerAgent -ErrorAction SilentlyContinue) { & $exe service stop | Out-Null }
  Copy-Item $sourceExe $exe -Force
}

$env:CARETAKER_ENROLL_TOKEN = (Get-Content (Join-Path $Source 'enroll-token') -Raw).Trim()
try {
  & $exe service install --collector $Collector
  if ($LASTEXITCODE -ne 0) { throw "service install failed ($LASTEXITCODE)" }
} finally {
  Remove-Item Env:\CARETAKER_ENROLL_TOKEN
}
& $exe service start
if ($LASTEXITCODE -ne 0) { throw "service start failed ($LASTEXITCODE)" }
