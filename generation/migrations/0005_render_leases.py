"""Render leases (issue 14): a claim's lease, and when an image's render message was sent."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("generation", "0004_imported_variants")]

    operations = [
        migrations.AddField(
            model_name="image",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="image",
            name="enqueued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(
            "UPDATE generation_image SET enqueued_at = queued_at WHERE status = 'queued'",
            migrations.RunSQL.noop,
        ),
    ]
