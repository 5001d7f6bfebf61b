"""A version exported for the field's tools: the folder ``trainer.core.export`` writes, with a model card written
from what the dashboard knows about the run (its settings, data, evaluation and personalization report). People
are named by pseudonyms (``export_pseudonym``); staff look one up, either way, with ``who``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings

from trainer.core import export, provision
from trainer.models import TrainingRun


class NotExportable(ValueError):
    """The run has no saved model to export."""


def export_pseudonym(exported: str) -> str:
    """The id an export gives the person this site knows as ``exported``, keyed by this site's secret key."""
    from users.prism.ids import pseudonym

    return pseudonym(exported, key=settings.SECRET_KEY)


def who(run: TrainingRun, names: list[str]) -> list[str]:
    """For staff, one line per name: a username or the id the site's exports carry gives the person's
    pseudonym and their row in this version's export; a pseudonym gives the person it names in this version
    (found by working out the pseudonym of everyone the version was trained on: there is no table to leak)."""
    from users.dataset.selectors import people_named
    from users.prism.ids import PSEUDONYM_PREFIX, exported_user_id

    index = json.loads((settings.ARTIFACTS_DIR / run.artifacts / "users.json").read_text())["users"]
    behind = {export_pseudonym(person): person for person in index}
    lines = []
    for name in names:
        if name.startswith(PSEUDONYM_PREFIX):
            person = behind.get(name)
            lines.append(f"{name}: {person} (row {index[person]})" if person else
                         f"{name}: no one of version {run.pk} (another site's, or a mistyped pseudonym)")
            continue
        found, _ = people_named([name])
        if len(found) == 1:
            exported = exported_user_id(found[0], getattr(found[0], "profile", None))
        elif name in index:  # the version names them; their account is gone
            exported = name
        else:
            lines.append(f"{name}: no account has that username or exported id")
            continue
        row = index.get(exported)
        where = f"row {row} of users.json" if row else f"not in version {run.pk}: its export has no row for them"
        lines.append(f"{name}: {exported} -> {export_pseudonym(exported)} ({where})")
    return lines


def base_names(run: TrainingRun) -> tuple[str, str]:
    """(the base model's folder here, the name the export records for it: the hub id of the bundled model)."""
    from trainer.core.artifacts import base_model_here
    from trainer.worker.serving import local_base_model

    folder = base_model_here(settings.ARTIFACTS_DIR / run.artifacts, local_base_model)
    bundled = provision.bundled_folder(settings.DATA_DIR)
    return folder, export.BUNDLED_HUB_ID if Path(folder).resolve() == bundled.resolve() else folder


def model_card(run: TrainingRun, base_model: str) -> str:
    from trainer.core.evaluate import accuracy_interval_text
    from trainer.core.winrate import WinRate
    from trainer.personalization.report import OPPONENTS, personalization_report

    config, data = run.config or {}, run.data_summary or {}
    evaluation = run.evaluation or {}
    lines = [
        "---",
        f"base_model: {base_model}",
        "library_name: peft",
        "tags: [lora, dpo, p-rlhf, personalization, preference-learning]",
        "---",
        "",
        f"# {run.name or f'Version {run.pk}'}: a personalized LoRA with per-person soft prompts",
        "",
        "Trained with personalized DPO (P-RLHF, Li et al., arXiv 2402.05133): one LoRA adapter shared by everyone "
        "and, for each person, a few vectors placed right after BOS, before the chat-templated prompt. "
        f"`user_model`: {config.get('user_model', 'none')}, loss {config.get('loss', 'dpo')}.",
        "",
        "## Use",
        "",
        export.USAGE,
        "",
        "## Data",
        "",
        f"{data.get('pairs', '?')} preference pairs from {data.get('seen_users', '?')} people trained on "
        f"({data.get('train_pairs', '?')} training pairs; {data.get('test_seen_pairs', '?')} held-out pairs of "
        f"the same people, {data.get('test_unseen_pairs', '?')} of {data.get('unseen_users', '?')} people kept "
        "out of training).",
        "",
        "## Evaluation",
        "",
        "Held-out pair accuracy (the chosen reply ranked above the rejected one by the implicit reward), with "
        "its 95 % Wilson interval and the number of pairs:",
        "",
        "| who | accuracy [95 % interval], n |",
        "|---|---|",
        f"| everyone | {accuracy_interval_text(evaluation)} |",
        f"| people trained on (own vectors) | {accuracy_interval_text(evaluation.get('seen'))} |",
        f"| people kept out (generic vectors) | {accuracy_interval_text(evaluation.get('unseen'))} |",
        *[f"| group {name} | {accuracy_interval_text(group)} |"
          for name, group in sorted((evaluation.get("groups") or {}).items())],
        "",
    ]
    report = personalization_report(run)
    if report:
        lines += ["Generated replies judged, own vectors against each other model (ties count half, 95 % "
                  "intervals):", "", "| group | people | " + " | ".join(f"vs {o}" for o in OPPONENTS.values()) + " |",
                  "|---|---|" + "---|" * len(OPPONENTS)]
        lines += [f"| {g['name']} | {g['people']} | "
                  + " | ".join(WinRate(**g["vs"][o]).text() for o in OPPONENTS) + " |" for g in report["groups"]]
        if report["served_worse_text"]:
            lines += ["", f"**Warning:** {report['served_worse_text']}"]
        lines.append("")
    else:
        lines += ["No personalization evaluation of generated replies was run for this version.", ""]
    lines += [
        "## Who is who",
        "",
        "`users.json` maps each person's pseudonym to their row of `user_vectors.safetensors` (row 0: the generic "
        "vectors, for anyone else). A pseudonym is `person-` and 16 hex digits of HMAC-SHA256 under the site's "
        "secret key of the person's id on the site: the same person has the same pseudonym in every version "
        "this site exports, and no one without the key can trace it back. Imported PRISM people get one too, so "
        "a row cannot be joined to PRISM's published survey answers by its id. The site's staff find a person's "
        "pseudonym, or the person behind one, with `python manage.py export_version RUN --who NAME`.",
        "",
        "## Training settings",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True),
        "```",
        "",
        "## Limitations",
        "",
        "- Measured on the held-out conversations of the people it was trained on; it says nothing about people "
        "unlike them. A group served worse than by plain DPO is named above when the evaluation found one.",
        "- `users.json` and `user_vectors.safetensors` are **personal data**: each row was learned from one "
        "person's ratings, and a pseudonym is still personal data (the site can name the person). Share them only "
        "as the study's consent allows; the adapter alone holds no one's vectors.",
        "",
    ]
    return "\n".join(lines)


def export_run(run: TrainingRun, out: Path, *, merged: bool = False) -> Path:
    if run.status != TrainingRun.Status.COMPLETED or not run.artifacts:
        raise NotExportable(f"run {run.pk} has no saved model (it is {run.status}).")
    folder, name = base_names(run)
    return export.export_version(settings.ARTIFACTS_DIR / run.artifacts, Path(out), base_folder=str(folder),
                                 base_model=str(name), card=model_card(run, str(name)),
                                 pseudonym=export_pseudonym, merged=merged)


def prepare_download(run_id: int) -> str:
    """On a train worker: the run's download (``trainer.downloads``), zipped in a temporary folder and renamed
    into place; a failure leaves its reason for the run page instead."""
    import shutil
    import tempfile

    from trainer import downloads

    try:
        run = TrainingRun.objects.get(pk=run_id)
        with tempfile.TemporaryDirectory(dir=downloads.folder(run_id), prefix=".export-") as tmp:
            name = downloads.zip_path(run_id).stem
            export_run(run, Path(tmp) / name)
            archive = shutil.make_archive(str(Path(tmp) / name), "zip", root_dir=tmp, base_dir=name)
            os.replace(archive, downloads.zip_path(run_id))
        return "ready"
    except Exception as exc:
        downloads.error_path(run_id).write_text(f"The export failed: {exc.__class__.__name__}: {exc}")
        return "failed"
    finally:
        downloads.pending_path(run_id).unlink(missing_ok=True)
