"""Four candidate sources out of the box: the base model steered by different
system prompts and sampling settings. The first is PRISM's own shared system
prompt (../shared/data/prism/models.jsonl). Staff can edit them in the admin."""

from django.db import migrations

PRISM_HEADER = "You are a conversational assistant. Limit your answers to around 50 words. Do not refer to your word limit."

DEFAULTS = [
    ("base-prism", PRISM_HEADER, 0.7, 0.9),
    ("base-detailed", "You are a knowledgeable assistant. Give a thorough, well-organised answer with details and examples.", 0.7, 0.9),
    ("base-warm", "You are a warm, friendly and encouraging assistant. Answer kindly and personally.", 0.9, 0.95),
    ("base-plain", "", 1.0, 0.95),
]


def create(apps, schema_editor):
    ReplySource = apps.get_model("users", "ReplySource")
    for name, prompt, temperature, top_p in DEFAULTS:
        ReplySource.objects.get_or_create(
            name=name, defaults={"system_prompt": prompt, "temperature": temperature, "top_p": top_p}
        )


def remove(apps, schema_editor):
    apps.get_model("users", "ReplySource").objects.filter(name__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("users", "0002_prism_collection")]
    operations = [migrations.RunPython(create, remove)]
