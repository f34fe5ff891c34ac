"""An Azure stack whose repository and activity log live in Azure Blob Storage (a real Azurite): without
acceptance's deploy record in the container the production plan stops; the record is written there."""

from __future__ import annotations

import uuid

import pytest

from mxinfra.cli import main
from scaffold import copy_example, record_deploy


@pytest.fixture
def blob_project(tmp_path, azure_azurite, monkeypatch):
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_azurite)
    container = f"mx-{uuid.uuid4().hex[:20]}"
    BlobServiceClient.from_connection_string(azure_azurite).create_container(container)
    url = f"azblob://devstoreaccount1/{container}/orders"
    dest = copy_example(tmp_path / "example")
    for stack in ("azure-acceptance", "azure-production"):
        f = dest / "stacks" / f"Pulumi.{stack}.yaml"
        f.write_text(f.read_text().replace("config:\n", f"config:\n  mxinfra:repository: {url}\n", 1))
    return dest, azure_azurite, container


def test_production_gate_reads_the_blob_activity_log(blob_project, capsys):
    dest, conn, container = blob_project
    rc = main(["plan", "-s", "azure-production", "-C", str(dest)])
    err = capsys.readouterr().err
    assert rc == 2 and "no deploy record in 'acceptance'" in err and f"azblob://devstoreaccount1/{container}/orders" in err
    record_deploy(dest, "azure-acceptance")
    from azure.storage.blob import BlobServiceClient

    blobs = [b.name for b in BlobServiceClient.from_connection_string(conn).get_container_client(container).list_blobs()]
    assert any("acceptance" in b for b in blobs), blobs
    # The gate now finds acceptance's record in the container; whether it accepts it depends on the keys
    # trusted for signed records (governance's configuration), so only the record's presence is asserted.
    rc = main(["activity", "-e", "acceptance", "--repository", f"azblob://devstoreaccount1/{container}/orders", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "deploy" in out.out and "acceptance" in out.out
