//! Decisions in words: one endpoint's plan and trace, and the vocabulary of nodes and reasons.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use patchflow_core::model::Inventory;
use patchflow_core::plan::{EndpointPlan, Plan};
use patchflow_core::reason;
use patchflow_core::rules::cadence::{InstallMode, RebootPlan};
use patchflow_core::schedule::{utc, Window};
use patchflow_core::trace::Node;

/// A local instant with its weekday and zone abbreviation.
pub(crate) fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

/// A window in local time, the end shortened when it is on the same local day.
pub(crate) fn local_window(w: &Window, tz: Tz) -> String {
    let s = w.start.with_timezone(&tz);
    let e = w.end.with_timezone(&tz);
    if s.date_naive() == e.date_naive() {
        format!(
            "{} - {}",
            s.format("%a %Y-%m-%d %H:%M"),
            e.format("%H:%M %Z")
        )
    } else {
        format!(
            "{} - {}",
            s.format("%a %Y-%m-%d %H:%M %Z"),
            e.format("%a %H:%M %Z")
        )
    }
}

/// A window in UTC.
pub(crate) fn utc_window(w: &Window) -> String {
    format!("{} - {}", utc::format(&w.start), utc::format(&w.end))
}

fn install_mode(m: InstallMode) -> &'static str {
    match m {
        InstallMode::Automatic => "automatic (the RMM installs)",
        InstallMode::Technician => "by a technician through the RMM",
    }
}

/// Writes one endpoint's decisions and the trace behind them, in words.
pub(crate) fn endpoint(
    out: &mut dyn Write,
    plan: &Plan,
    inventory: &Inventory,
    ep: &EndpointPlan,
) -> io::Result<()> {
    let client = inventory
        .client(&ep.client)
        .map_or(ep.client.as_str(), |c| c.name.as_str());
    let kind = match ep.kind {
        patchflow_core::model::EndpointKind::Server => "server",
        patchflow_core::model::EndpointKind::Workstation => "workstation",
    };
    writeln!(
        out,
        "{} ({}), {kind} of {client}, zone {}",
        ep.id,
        ep.hostname,
        ep.tz.name()
    )?;
    writeln!(
        out,
        "cycle {}: Patch Tuesday {}, released {} ({})",
        plan.release.cycle,
        plan.release.patch_tuesday,
        utc::format(&plan.release.released_at),
        local(plan.release.released_at, ep.tz)
    )?;
    writeln!(out)?;
    writeln!(out, "  scope    {}", ep.scope.as_str().replace('_', " "))?;
    let crit = ep
        .criticality
        .map(|c| format!("   criticality {c}"))
        .unwrap_or_default();
    writeln!(
        out,
        "  track    {}   ring {}{crit}",
        ep.track.as_str(),
        ep.ring.as_str()
    )?;
    match (ep.wave, ep.install, ep.reboot) {
        (Some(wave), Some(install), Some(reboot)) => {
            writeln!(out, "  wave     {}", wave.as_str())?;
            writeln!(out, "  install  {}", install_mode(install.mode))?;
            writeln!(out, "           {}", local_window(&install.window, ep.tz))?;
            writeln!(out, "           {}", utc_window(&install.window))?;
            match reboot {
                RebootPlan::Automatic(w) => {
                    writeln!(out, "  reboot   automatic, in the install window")?;
                    writeln!(out, "           {}", utc_window(&w))?;
                }
                RebootPlan::Technician => {
                    writeln!(out, "  reboot   a technician schedules and confirms it")?;
                }
                RebootPlan::User {
                    reminder_local,
                    forced,
                } => {
                    writeln!(out, "  reboot   by the user, reminded daily at {reminder_local} local until rebooted")?;
                    writeln!(
                        out,
                        "           forced if not rebooted: {}",
                        local_window(&forced, ep.tz)
                    )?;
                    writeln!(
                        out,
                        "                                   {}",
                        utc_window(&forced)
                    )?;
                }
            }
            if ep.manual_approval_required {
                writeln!(
                    out,
                    "  approval critical server: an engineer must approve before anything installs"
                )?;
            }
        }
        _ if ep.up_to_date => writeln!(
            out,
            "  wave     {}\n  install  none: its patch scan shows no approved patch missing (up to date)",
            ep.wave.map_or("-", |w| w.as_str())
        )?,
        _ => writeln!(out, "  not patched this cycle")?,
    }
    let ids: Vec<&str> = ep.patches.iter().map(|p| p.as_str()).collect();
    writeln!(
        out,
        "  patches  {} ({} applicability)",
        if ids.is_empty() {
            "none approved apply".to_owned()
        } else {
            ids.join(", ")
        },
        ep.applicability.as_str()
    )?;
    let unknown: Vec<&str> = plan
        .unknown_patches
        .iter()
        .filter(|(e, _)| *e == ep.id)
        .map(|(_, p)| p.as_str())
        .collect();
    if !unknown.is_empty() {
        writeln!(
            out,
            "           also reported needed, not in the catalog: {}",
            unknown.join(", ")
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Why, step by step:")?;
    for (i, step) in ep.trace.entries().iter().enumerate() {
        writeln!(
            out,
            "  {:>2}. {} [{}]",
            i + 1,
            step.node.title(),
            step.node.id()
        )?;
        let why = reason::explain(step.reason).unwrap_or(step.reason);
        writeln!(out, "      -> {}: {why} ({})", step.outcome, step.reason)?;
        if let Some(facts) = &step.facts {
            writeln!(out, "         {facts}")?;
        }
    }
    Ok(())
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Writes the node vocabulary.
pub(crate) fn nodes(out: &mut dyn Write, markdown: bool) -> io::Result<()> {
    if markdown {
        writeln!(out, "| node id | phase | seed node | rule |")?;
        writeln!(out, "|---|---|---|---|")?;
        for n in Node::ALL {
            writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                n.id(),
                md_escape(n.phase()),
                md_escape(n.title()),
                md_escape(n.rule())
            )?;
        }
    } else {
        for n in Node::ALL {
            writeln!(out, "{:<32} {}", n.id(), n.title())?;
            writeln!(out, "{:<32} {}", "", n.rule())?;
        }
    }
    Ok(())
}

/// Writes the reason codes.
pub(crate) fn reasons(out: &mut dyn Write, markdown: bool) -> io::Result<()> {
    if markdown {
        writeln!(out, "| reason code | meaning |")?;
        writeln!(out, "|---|---|")?;
        for (code, text) in reason::ALL {
            writeln!(out, "| `{code}` | {} |", md_escape(text))?;
        }
    } else {
        for (code, text) in reason::ALL {
            writeln!(out, "{code:<34} {text}")?;
        }
    }
    Ok(())
}
