from django.urls import reverse

from trainer import health


def test_only_staff_see_the_status_page(client, owner):
    client.force_login(owner)
    response = client.get(reverse("status"))
    assert response.status_code == 403 and "for the study's staff" in response.content.decode()


def test_the_status_page_names_a_fix_for_each_red_item(client, staff, test_redis, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # nothing provisioned there
    settings.BASE_MODEL = "bundled"
    client.force_login(staff)
    page = client.get(reverse("status")).content.decode()
    assert "python manage.py provision_model" in page
    assert "Redis 7" in page or "Redis 8" in page


def test_the_worker_check_reports_an_empty_queue_with_the_command_to_start_one(test_redis, db):
    checks = {c.name: c for c in health.check_workers(redis_ok=True)}
    train = checks["Workers on `train`"]
    assert not train.ok
    assert "celery -A alignment_site worker -Q train" in train.fix


def test_a_dead_redis_is_red_with_a_fix(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    check = health.check_redis()
    assert not check.ok and "Start Redis" in check.fix


def test_the_status_page_shows_commands_as_code_inside_a_table_box_of_its_own(client, staff, test_redis, settings,
                                                                              tmp_path):
    settings.DATA_DIR = tmp_path  # nothing provisioned there
    settings.BASE_MODEL = "bundled"
    client.force_login(staff)
    page = client.get(reverse("status")).content.decode()
    table = page.split('<div class="table-wrap status-table">', 1)[1].split("</table>", 1)[0]
    assert "`" not in table
    assert "<code>python manage.py provision_model</code>" in table
    assert "Workers on <code>train</code>" in table


def test_code_spans_escape_the_rest_and_leave_an_unpaired_backtick_as_written():
    from trainer.templatetags.run_tags import code_spans

    assert code_spans("Run `a<b` & go") == "Run <code>a&lt;b</code> &amp; go"
    assert code_spans("it's a ` alone <") == "it&#x27;s a ` alone &lt;"


def test_the_train_worker_command_is_the_one_run_sh_runs_so_the_worker_has_one_name():
    from tests.models_fixtures import REPO

    run_sh = (REPO / "run.sh").read_text()
    assert health.worker_command("train") in run_sh and "-n train@%h" in health.worker_command("train")
    assert health.worker_command("generate").split(" -n ")[1] in run_sh


def test_a_busy_train_worker_is_listed_once_under_the_name_it_answers_to(db, staff, monkeypatch):
    from trainer.models import TrainingRun

    run = TrainingRun.objects.create(name="r", created_by=staff, status=TrainingRun.Status.RUNNING,
                                     worker="train@box")

    class Inspect:  # a worker that still answers while it trains (not solo), and an idle one
        def active_queues(self):
            return {"train@box": [{"name": "train"}], "train@other": [{"name": "train"}]}

    monkeypatch.setattr(health.app.control, "inspect", lambda timeout: Inspect())
    assert health.workers_by_queue()["train"] == ["train@other", f"train@box (busy with run {run.pk})"]


def test_the_status_page_never_shows_the_redis_password(client, staff, test_redis, settings):
    settings.REDIS_URL = "redis://:s3cret-pass@127.0.0.1:1/0"  # unreachable: the red line names the address
    client.force_login(staff)
    page = client.get(reverse("status")).content.decode()
    assert "s3cret-pass" not in page and "redis://:***@127.0.0.1:1/0" in page
    assert health.redacted("redis://default:pw@[::1]:6380/2") == "redis://default:***@[::1]:6380/2"
    assert health.redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
