from django.urls import reverse

from trainer import health


def test_only_staff_see_the_status_page(client, owner):
    client.force_login(owner)
    response = client.get(reverse("status"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


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
