"""A version exported for the field's tools: a standard PEFT folder with each person's vectors under a
pseudonym, the tokenizer and a model card whose own code, run in a fresh process with PEFT and transformers
alone, writes the same greedy reply as the dashboard for a person's vectors; the merged model on request; staff
find a person's pseudonym, and the person behind one, from the command line."""

import json
import re
import subprocess
import sys

import pytest
import torch
from django.core.management import CommandError, call_command
from safetensors.torch import load_file

from trainer.core.artifacts import load_run
from trainer.core.generation import generate_text
from trainer.core.sequences import encode_prompt, prompt_embeddings
from trainer.version_export import export_pseudonym

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Tell me about tea."}]


def test_an_exported_version_loads_without_the_project_and_replies_as_the_dashboard_does(
        active_run, settings, tmp_path, tiny_model_path):
    out = tmp_path / "export"
    call_command("export_version", active_run.pk, str(out))
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "user_vectors.safetensors", "users.json",
            "README.md", "training_config.json", "tokenizer_config.json"} <= names
    card = (out / "README.md").read_text()
    assert re.search(r"^---\nbase_model: .+\nlibrary_name: peft\n", card)
    assert "personal data" in card
    rows = json.loads((out / "users.json").read_text())
    alice = export_pseudonym("web-alice")  # what someone given the folder knows her by
    assert rows[alice] >= 1 and all(re.fullmatch(r"person-[0-9a-f]{16}", person) for person in rows)
    assert len(rows) == 3 and "alice" not in (out / "users.json").read_text()

    usage = re.search(r"```python\n(.*?)```", card, re.S).group(1)  # the card's own instructions, run as they are
    script = usage + (  # the replies, and the next-token scores after each person's prompt
        f"\nmessages = {MESSAGES!r}\n"
        f"print(json.dumps([[reply(p, messages, max_new_tokens=20) for p in ({alice!r}, 'nobody')],\n"
        "                  [model(inputs_embeds=prompt_embeddings(p, messages)).logits[0, -1].tolist()\n"
        f"                   for p in ({alice!r}, 'nobody')]]))\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=out, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    exported, scores = json.loads(done.stdout.strip().splitlines()[-1])

    version = load_run(settings.ARTIFACTS_DIR / active_run.artifacts, base_model=str(tiny_model_path), merge=True)
    dashboard = [generate_text(version.model.lm, version.tokenizer, MESSAGES, soft_prompt=version.soft_prompt(p),
                               max_new_tokens=20, temperature=0.0) for p in ("web-alice", "nobody")]
    assert exported == dashboard and all(dashboard)
    for person, score in zip(("web-alice", "nobody"), scores):  # the same prompt layout, to the last digit
        inputs = prompt_embeddings(version.model.lm.get_input_embeddings().weight, version.tokenizer,
                                   encode_prompt(version.tokenizer, MESSAGES).ids, version.soft_prompt(person))
        with torch.no_grad():
            ours = version.model.lm(inputs_embeds=inputs.unsqueeze(0)).logits[0, -1]
        assert torch.allclose(torch.tensor(score), ours, atol=1e-4)
    assert not torch.allclose(torch.tensor(scores[0]), torch.tensor(scores[1]), atol=1e-4)
    # What the card's code put in front of each prompt is the dashboard's own vectors of that person.
    vectors = load_file(out / "user_vectors.safetensors")["vectors"]
    assert torch.equal(vectors[rows[alice]], version.soft_prompt("web-alice").float())
    assert torch.equal(vectors[0], version.soft_prompt("nobody").float())
    assert not torch.equal(vectors[0], vectors[rows[alice]])


def test_a_pseudonym_is_keyed_by_the_sites_secret_and_the_same_for_one_person(settings):
    from users.prism.ids import pseudonym

    first = export_pseudonym("web-alice")
    assert first == export_pseudonym("web-alice") == pseudonym("web-alice", key=settings.SECRET_KEY)
    assert first != export_pseudonym("web-bob") and first.startswith("person-") and len(first) == 23
    assert pseudonym("user5", key="another site's key") != pseudonym("user5", key=settings.SECRET_KEY)
    settings.SECRET_KEY = "another site's key"
    assert export_pseudonym("web-alice") != first


def test_staff_find_a_persons_pseudonym_and_the_person_behind_one(active_run, owner, settings, capsys):
    rows = json.loads((settings.ARTIFACTS_DIR / active_run.artifacts / "users.json").read_text())["users"]
    alice = export_pseudonym("web-alice")
    call_command("export_version", active_run.pk, "--who", "alice", "--who", "web-alice")
    assert capsys.readouterr().out.splitlines() == [
        f"alice: web-alice -> {alice} (row {rows['web-alice']} of users.json)",
        f"web-alice: web-alice -> {alice} (row {rows['web-alice']} of users.json)"]
    call_command("export_version", active_run.pk, "--who", alice, "--who", "person-0000000000000000",
                 "--who", "sam", "--who", "nobody-here")
    assert capsys.readouterr().out.splitlines() == [
        f"{alice}: web-alice (row {rows['web-alice']})",
        f"person-0000000000000000: no one of version {active_run.pk} (another site's, or a mistyped pseudonym)",
        f"sam: web-sam -> {export_pseudonym('web-sam')} (not in version {active_run.pk}: its export has no row "
        "for them)",
        "nobody-here: no account has that username or exported id"]
    with pytest.raises(CommandError, match="name a new folder"):
        call_command("export_version", active_run.pk)


def test_the_card_names_the_settings_the_data_size_intervals_and_the_limitations(active_run):
    from trainer.version_export import model_card

    active_run.data_summary = {"pairs": 120, "seen_users": 3, "train_pairs": 80, "test_seen_pairs": 40,
                               "unseen_users": 0, "test_unseen_pairs": 0}
    active_run.evaluation = {"accuracy": 0.75, "n": 40, "seen": {"accuracy": 0.75, "n": 40}}
    card = model_card(active_run, "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "120 preference pairs from 3 people trained on (80 training pairs; 40 held-out pairs" in card
    assert "| everyone | 75.0% [59.8, 85.8], n=40 |" in card  # Wilson: worked out by hand for 30 of 40
    assert "| people kept out (generic vectors) | - |" in card
    settings_part = card.split("## Training settings", 1)[1].split("## Limitations", 1)
    assert json.loads(re.search(r"```json\n(.*?)```", settings_part[0], re.S).group(1)) == active_run.config
    assert "personal data" in settings_part[1] and "pseudonym" in card.split("## Who is who")[1]
    assert "No personalization evaluation of generated replies was run" in card


def test_merged_writes_a_folder_transformers_loads_that_replies_as_the_adapter_does(
        active_run, tmp_path, tiny_model_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    out = tmp_path / "export"
    call_command("export_version", active_run.pk, str(out), "--merged")
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    adapted = AutoPeftModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    ids = torch.tensor([[1, 17, 42, 99, 7]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-4)  # the LoRA is in it
    assert (out / "merged" / "tokenizer_config.json").is_file()


def test_export_refuses_a_run_without_a_model_and_an_existing_folder(active_run, staff, tmp_path):
    from trainer.models import TrainingRun

    failed = TrainingRun.objects.create(name="f", created_by=staff, status=TrainingRun.Status.FAILED)
    with pytest.raises(CommandError, match="has no saved model"):
        call_command("export_version", failed.pk, str(tmp_path / "a"))
    with pytest.raises(CommandError, match="exists: choose a new folder"):
        call_command("export_version", active_run.pk, str(tmp_path))
    with pytest.raises(CommandError, match="no run 999999"):
        call_command("export_version", 999999, str(tmp_path / "b"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_staff_prepare_the_download_on_the_run_page_and_a_train_worker_writes_it(
        active_run, client, staff, owner, artifacts_dir, tiny_model_path, tmp_path):
    import io
    import os
    import time
    import zipfile

    from tests.services import train_worker, wait_until
    from trainer import downloads

    client.force_login(staff)
    page = client.get(f"/staff/runs/{active_run.pk}/").content.decode()
    assert 'data-state="none"' in page and "Prepare the download" in page
    with train_worker(tiny_model_path, tmp_path, "train-export@localhost", ARTIFACTS_DIR=str(artifacts_dir)):
        response = client.post(f"/staff/runs/{active_run.pk}/download/prepare/")
        assert response.status_code == 302
        wait_until(lambda: downloads.download_state(active_run).state != "preparing", timeout=120)
    panel = client.get(f"/staff/runs/{active_run.pk}/download/panel/").content.decode()
    assert 'data-state="ready"' in panel and f"version-{active_run.pk}-peft.zip" in panel
    response = client.get(f"/staff/runs/{active_run.pk}/download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    folder = f"version-{active_run.pk}-peft/"
    assert {folder + n for n in ("adapter_config.json", "adapter_model.safetensors", "user_vectors.safetensors",
                                 "users.json", "README.md")} <= set(names)

    client.force_login(owner)  # a participant gets none of it
    assert client.get(f"/staff/runs/{active_run.pk}/download/").status_code in (302, 403, 404)

    # Asked for, and its worker stopped before writing it: after 15 minutes the page says so and offers it again.
    pending = downloads.folder(active_run.pk) / ".pending"
    pending.write_text("0")
    os.utime(pending, (time.time() - 16 * 60,) * 2)
    client.force_login(staff)
    panel = client.get(f"/staff/runs/{active_run.pk}/download/panel/").content.decode()
    assert 'data-state="failed"' in panel and "did not finish the download within 15 minutes" in panel
    assert "Prepare the download" in panel
