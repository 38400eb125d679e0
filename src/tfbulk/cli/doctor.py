"""`tfbulk doctor`: will tonight's run work?"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tfbulk.cli.app import examples
from tfbulk.cli.options import (
    AsJson,
    Bucket,
    CaBundle,
    Courses,
    DateGreaterThan,
    Dest,
    DestEndpointUrl,
    DestProfile,
    DestRegion,
    EndpointUrl,
    Expires,
    HashAlgorithm,
    HttpVersion,
    IpAddress,
    KeyPairId,
    KeyTemplate,
    LimitCourses,
    MaxFileSize,
    MinFreeSpace,
    PathTemplate,
    PolicyResource,
    PrivateKey,
    Profile,
    Region,
    Segments,
    SignerKind,
    SnapshotPath,
    State,
    UrlTemplate,
    limit_settings,
    network_settings,
    run_settings,
    s3_dest,
    scope,
    signer_settings,
)
from tfbulk.cli.output import print_json
from tfbulk.display.console import make_console
from tfbulk.settings import (
    DEFAULT_EXPIRES,
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MIN_FREE_SPACE,
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_REGION,
    policy_settings,
)

EXAMPLES = examples(
    "tfbulk doctor --snapshot catalogue.db --dest /srv/videos",
    "tfbulk doctor --snapshot catalogue.db --dest /srv/videos --probe 5",
    "tfbulk doctor --snapshot catalogue.db --dest /srv/videos --json",
    "# takes every input flag of `tfbulk run`: swap the word run for doctor",
)


def doctor_command(
    snapshot: SnapshotPath,
    dest: Dest = "downloads",
    state: State = None,
    course: Courses = None,
    segment: Segments = None,
    limit_courses: LimitCourses = None,
    url_template: UrlTemplate = None,
    path_template: PathTemplate = DEFAULT_PATH_TEMPLATE,
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    hash_algorithm: HashAlgorithm = None,
    policy_resource: PolicyResource = None,
    date_greater_than: DateGreaterThan = None,
    ip_address: IpAddress = None,
    bucket: Bucket = None,
    region: Region = DEFAULT_REGION,
    endpoint_url: EndpointUrl = None,
    key_template: KeyTemplate = DEFAULT_KEY_TEMPLATE,
    profile: Profile = None,
    probe: Annotated[
        int,
        typer.Option(
            "--probe", metavar="N", help="Send signed HEAD requests for N sampled segments."
        ),
    ] = 0,
    http: HttpVersion = "2",
    ca_bundle: CaBundle = None,
    max_file_size: MaxFileSize = DEFAULT_MAX_FILE_SIZE,
    min_free_space: MinFreeSpace = DEFAULT_MIN_FREE_SPACE,
    as_json: AsJson = False,
    dest_endpoint_url: DestEndpointUrl = None,
    dest_region: DestRegion = DEFAULT_REGION,
    dest_profile: DestProfile = None,
) -> int:
    """Check snapshot, key, destination, free disk and state DB; non-zero if any check fails."""
    settings = run_settings(
        snapshot,
        dest,
        state,
        (url_template, path_template),
        signer=signer_settings(
            signer,
            key_pair_id,
            private_key,
            expires,
            bucket=bucket,
            region=region,
            endpoint_url=endpoint_url,
            key_template=key_template,
            profile=profile,
            policy=policy_settings(hash_algorithm, policy_resource, date_greater_than, ip_address),
        ),
        scope=scope(course, segment, limit_courses),
        network=network_settings(http, ca_bundle, max_file_size),
        limits=limit_settings(min_free_space=min_free_space),
        s3=s3_dest(dest, dest_endpoint_url, dest_region, dest_profile),
    )
    from tfbulk.commands.doctor import as_json as doctor_json
    from tfbulk.commands.doctor import diagnose
    from tfbulk.display.checks import print_checks

    checks = diagnose(settings, probe=probe)
    if as_json:
        print_json(doctor_json(checks))
    else:
        fancy = sys.stdout.isatty()
        print_checks(make_console(sys.stdout, terminal=fancy), checks, fancy=fancy)
    return 1 if any(c.status == "fail" for c in checks) else 0
