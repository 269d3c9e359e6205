"""``raytrain`` subcommands. Ray Jobs: submit a job spec, follow or stop submitted jobs."""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub) -> None:
    sb = sub.add_parser("submit", help="validate a jobs/*.yaml spec and submit it to a Ray cluster (Ray Jobs)")
    sb.add_argument("spec", help="job spec YAML (jobs/*.yaml)")
    sb.add_argument("--dashboard", metavar="URL",
                    help="the cluster's dashboard (Ray Jobs) URL, http://HEAD:8265 (default: the spec's, RAY_ADDRESS, "
                         "or local)")  # fmt: skip
    sb.add_argument("--wait", action="store_true", help="follow the logs until the job ends; exit 1 unless it succeeds")
    sb.add_argument("--dry-run", action="store_true", help="validate and print the command; submit nothing")
    sb.set_defaults(func=cmd_submit)

    jb = sub.add_parser("jobs", help="status, logs or stop of a submitted job")
    jb.add_argument("action", choices=["status", "logs", "stop", "list"], help="what to do")
    jb.add_argument("job_id", nargs="?", help="the submission id `raytrain submit` printed (not for list)")
    jb.add_argument("--dashboard", metavar="URL",
                    help="the cluster's dashboard (Ray Jobs) URL (default: RAY_ADDRESS, or local)")  # fmt: skip
    jb.set_defaults(func=cmd_jobs)


def cmd_submit(args: argparse.Namespace) -> int:
    import shlex

    from raytrain import jobs

    if args.dry_run:
        spec, root = jobs.load_spec(args.spec)
        print(f"valid; would run in {root}: {shlex.join(jobs.command(spec, root))}")
        env = jobs.runtime_env(spec, root)
        pip = f"; pip: {len(env['pip'])} package(s)" if env.get("pip") else ""
        print(f"runtime_env: raytrain from the {spec.runtime_env.raytrain}{pip}; env_vars: "
              + ", ".join(f"{k}={v}" for k, v in env["env_vars"].items()))  # fmt: skip
        cfg = jobs.effective_config(spec, root)
        print(f"storage: {cfg.storage_path or '(none: workdir/ray, one machine only)'}; tracking: "
              f"{cfg.tracking.uri or '(none: SQLite in the workdir, one machine only)'}")  # fmt: skip
        print(f"{cfg.method.name}, recipe {spec.recipe}: {cfg.train.steps} steps, {jobs.lr_summary(cfg)}")
        return 0
    c, job_id, argv = jobs.submit(args.spec, args.dashboard)
    print(f"submitted {job_id}: {shlex.join(argv)}")
    print(f"  raytrain jobs status {job_id} | raytrain jobs logs {job_id} | raytrain jobs stop {job_id}")
    if not args.wait:
        return 0
    status = jobs.wait(c, job_id)
    print(f"\njob {job_id}: {status}")
    if status != "SUCCEEDED":
        print(f"--- last lines of its log ---\n{jobs.tail(c, job_id)}", file=sys.stderr)
        return 1
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from raytrain import jobs
    from raytrain.errors import RaytrainError, first_line

    c = jobs.client(args.dashboard)
    if args.action == "list":
        for j in c.list_jobs():
            print(f"{j.submission_id}  {str(j.status).split('.')[-1]:<10}  {j.entrypoint}")
        return 0
    if not args.job_id:
        raise RaytrainError(f"jobs {args.action} needs a job id (see: raytrain jobs list)")
    try:
        if args.action == "status":
            info = c.get_job_info(args.job_id)
            print(f"{args.job_id}: {str(info.status).split('.')[-1]}" + (f" ({info.message})" if info.message else ""))
        elif args.action == "logs":
            print(c.get_job_logs(args.job_id), end="")
        else:
            print(f"{args.job_id}: {'stop requested' if c.stop_job(args.job_id) else 'already finished'}")
    except RuntimeError as exc:
        raise RaytrainError(f"job {args.job_id}: {first_line(exc)}") from None
    return 0
