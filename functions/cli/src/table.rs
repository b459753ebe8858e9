//! `plan --format table`: the plan for people, grouped by client and wave, local times beside UTC.

use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use patchflow_core::model::Inventory;
use patchflow_core::plan::{EndpointPlan, Plan};
use patchflow_core::rules::approval::Decision;
use patchflow_core::rules::cadence::{InstallMode, RebootPlan};
use patchflow_core::rules::scope::Scope;
use patchflow_core::rules::waves::Wave;
use patchflow_core::schedule::utc;

use crate::explain::{local, local_window, utc_window};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

fn reboot_cell(ep: &EndpointPlan) -> String {
    match &ep.reboot {
        Some(RebootPlan::Automatic(_)) => "automatic, in the install window".to_owned(),
        Some(RebootPlan::Technician) => "technician".to_owned(),
        Some(RebootPlan::User {
            reminder_local,
            forced,
        }) => format!(
            "user, reminded daily {reminder_local}; forced:\n{}\n{}",
            local_window(forced, ep.tz),
            utc_window(forced)
        ),
        None => String::new(),
    }
}

/// Writes the whole plan as tables.
pub(crate) fn render(out: &mut dyn Write, plan: &Plan, inventory: &Inventory) -> io::Result<()> {
    let r = &plan.release;
    writeln!(out, "patchflow plan, cycle {}", r.cycle)?;
    writeln!(
        out,
        "Patch Tuesday {}, released {} ({})",
        r.patch_tuesday,
        utc::format(&r.released_at),
        local(r.released_at, chrono_tz::America::Los_Angeles)
    )?;
    writeln!(out)?;

    if !plan.warnings.is_empty() {
        writeln!(out, "Warnings: {}", plan.warnings.len())?;
        for w in &plan.warnings {
            writeln!(
                out,
                "  {} {} ({}): {}",
                w.record(),
                w.code,
                w.subject,
                w.message
            )?;
        }
        writeln!(out)?;
    }

    let count = |d: Decision| plan.approvals.iter().filter(|a| a.decision == d).count();
    writeln!(
        out,
        "Approvals: {} auto-approved, {} declined, {} pending review",
        count(Decision::AutoApproved),
        count(Decision::Declined),
        count(Decision::PendingReview)
    )?;
    let mut t = table(&[
        "patch",
        "decision",
        "reason",
        "review due (UTC)",
        "applies to",
    ]);
    for (i, a) in plan.approvals.iter().enumerate() {
        t.add_row(vec![
            a.patch.to_string(),
            a.decision.as_str().to_owned(),
            a.reason.to_string(),
            a.review_due.map(|d| utc::format(&d)).unwrap_or_default(),
            plan.approval_endpoints
                .get(i)
                .map(|n| format!("{n} endpoint(s)"))
                .unwrap_or_default(),
        ]);
    }
    writeln!(out, "{t}")?;
    writeln!(out)?;

    // Update batches: each through its pilot and soak before production.
    writeln!(
        out,
        "Batches (each through its pilot and soak before production):"
    )?;
    for b in plan.batches() {
        let patches: Vec<&str> = b.patches.iter().map(|p| p.as_str()).collect();
        let when = if b.opens == patchflow_core::plan::PlanBatch::FIRST_DEPLOYMENT {
            "deploys this cycle on Patch Tuesday's decisions"
        } else {
            "pending review: each one approved after the first deployment is a later batch"
        };
        writeln!(
            out,
            "  batch {}{}: {when}: {}",
            b.batch,
            if b.batch > 1 { " and on" } else { "" },
            if patches.is_empty() {
                "(none)".to_owned()
            } else {
                patches.join(", ")
            }
        )?;
    }
    writeln!(out)?;

    writeln!(
        out,
        "Exception register: {} entr{}",
        plan.exception_register.len(),
        if plan.exception_register.len() == 1 {
            "y"
        } else {
            "ies"
        }
    )?;
    if !plan.exception_register.is_empty() {
        let mut t = table(&[
            "subject",
            "client",
            "kind",
            "reason",
            "reference",
            "signed",
            "lifted by",
        ]);
        for x in &plan.exception_register {
            t.add_row(vec![
                x.subject.clone(),
                x.client.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                serde_json::to_value(x.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                x.reason.to_string(),
                x.reference.clone().unwrap_or_default(),
                if x.signed { "yes" } else { "NO" }.to_owned(),
                x.lifted_by.to_string(),
            ]);
        }
        writeln!(out, "{t}")?;
    }

    for client in inventory.clients() {
        let eps: Vec<&EndpointPlan> = plan
            .endpoints
            .iter()
            .filter(|e| e.client == client.id)
            .collect();
        if eps.is_empty() {
            continue;
        }
        let in_scope = eps.iter().filter(|e| e.scope == Scope::InScope).count();
        writeln!(out)?;
        writeln!(
            out,
            "Client {} ({}){}: {} endpoints, {} in scope",
            client.id,
            client.name,
            client
                .tz
                .map(|tz| format!(", {}", tz.name()))
                .unwrap_or_default(),
            eps.len(),
            in_scope
        )?;
        for wave in [Wave::Pilot, Wave::Production] {
            let rows: Vec<&&EndpointPlan> = eps.iter().filter(|e| e.wave == Some(wave)).collect();
            if rows.is_empty() {
                continue;
            }
            writeln!(out, "  wave {} ({})", wave.as_str(), rows.len())?;
            let mut t = table(&[
                "endpoint",
                "host",
                "track",
                "install: local / UTC",
                "reboot",
            ]);
            let mut current = Vec::new();
            for ep in rows {
                if ep.up_to_date {
                    current.push(ep.id.to_string());
                    continue;
                }
                let Some(install) = ep.install else { continue };
                let mut cell = format!(
                    "{}\n{}",
                    local_window(&install.window, ep.tz),
                    utc_window(&install.window)
                );
                if install.mode == InstallMode::Technician {
                    cell.push_str("\nby a technician");
                }
                if ep.manual_approval_required {
                    cell.push_str("\nawaits engineer approval (critical)");
                }
                cell.push_str(&format!(
                    "\n{} patch(es), applicability {}",
                    ep.patches.len(),
                    ep.applicability.as_str()
                ));
                t.add_row(vec![
                    ep.id.to_string(),
                    ep.hostname.clone(),
                    ep.track.as_str().to_owned(),
                    cell,
                    reboot_cell(ep),
                ]);
            }
            if !t.is_empty() {
                writeln!(out, "{t}")?;
            }
            if !current.is_empty() {
                writeln!(
                    out,
                    "  up to date (the patch scan shows nothing approved missing): {}",
                    current.join(", ")
                )?;
            }
        }
        let out_of_scope: Vec<String> = eps
            .iter()
            .filter(|e| e.scope != Scope::InScope)
            .map(|e| {
                let why = e.trace.entries().last().map_or("", |s| s.reason);
                format!("{} {} ({why})", e.id, e.scope.as_str())
            })
            .collect();
        if !out_of_scope.is_empty() {
            writeln!(out, "  not patched: {}", out_of_scope.join("; "))?;
        }
    }

    if !plan.unknown_patches.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Patches a scan reported that the catalog does not have: {}",
            plan.unknown_patches.len()
        )?;
        let mut t = table(&["endpoint", "patch"]);
        for (e, p) in &plan.unknown_patches {
            t.add_row(vec![e.to_string(), p.to_string()]);
        }
        writeln!(out, "{t}")?;
    }

    writeln!(out)?;
    match plan.gates.workstations {
        Some(g) => writeln!(
            out,
            "Production gate, workstations (fleet): not before {}",
            utc::format(&g)
        )?,
        None => writeln!(
            out,
            "Production gate, workstations: none (no production workstations)"
        )?,
    }
    for (client, g) in &plan.gates.servers {
        writeln!(
            out,
            "Production gate, servers of {client}: not before {}",
            utc::format(g)
        )?;
    }
    Ok(())
}
