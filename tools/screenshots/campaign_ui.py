"""Screenshots of what a campaign manager sees in the Airflow UI (a dev tool, not a test).

Builds a small simulated shop with promoted champions (as ``tests/test_planning_step.py``),
tracked by a real ``mlflow server``; starts a real Airflow (``AirflowStack``, PostgreSQL on
127.0.0.1:5432) over ``dags/`` and ``plugins/`` with the simple auth manager's "all admins" mode
(no login page); then, in headless Chromium driven by Selenium:

1. ``campaign-trigger-form.png``: the "Trigger Dag" form of ``flashsale_campaign`` (sections,
   date-time pickers); ``campaign-trigger-form-promotions.png``: its Promotions section (the
   promotion types' drop-down open, where the UI draws one);
2. after triggering a run with the form's payload: ``campaign-approval.png``, the Required
   Action of ``approve_plan`` (the plan's Markdown summary, Approve / Reject),
   ``campaign-approval-stock.png``, the same page scrolled to its "Stock and discount" section
   (the demand champion's forecasts and stock), and ``campaign-required-actions.png``, the
   Browse -> Required Actions list;
3. ``campaign-mlflow-link.png``: the task page of ``plan_campaign`` (Details tab) with its
   "MLflow run" button.

Then it approves (so the run finishes) and stops everything.

Needs /usr/bin/chromium and /usr/bin/chromedriver (``apt-get install -y chromium
chromium-driver``) and Selenium, which is *not* a project dependency: install it aside with
``pip install --target /tmp/sel selenium`` (or set ``SELENIUM_PATH``).

    .venv/bin/python tools/screenshots/campaign_ui.py [--out docs/screenshots] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "flashsale_campaign"
CAMPAIGN_ID = "fs-20260214-valentine"
USERS, DAYS, SEED = 4_000, 35, 11
START = datetime.datetime(2026, 2, 14, 19, tzinfo=datetime.UTC)  # the data ends 2026-02-09
END = START + datetime.timedelta(hours=2)
WINDOW = (1400, 1800)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def form(campaign_id: str = CAMPAIGN_ID) -> dict:
    """The trigger form's payload, as the UI posts it."""
    from flashsale_ml.steps import form_from_spec

    return form_from_spec(
        {
            "campaign_id": campaign_id,
            "start": START.isoformat(),
            "end": END.isoformat(),
            "skus": [1000000 + i for i in range(8)],
            "promotions": {"pct_discount": 4.0, "gift_with_purchase": 6.0, "timed_coupon": 3.0},
            "discount_depths": [0.2, 0.3],
            "budget": 300.0,
        }
    )


def build_world(work: Path, tracking_uri: str) -> dict[str, str]:
    """Simulate the shop into a local lake, train, register and promote the champions (as the
    ``world`` fixture of tests/test_planning_step.py); return the tasks' FLASHSALE_* env."""
    env = {
        "FLASHSALE_HOME": str(work / "home"),
        "FLASHSALE_STORAGE_ROOT": (work / "lake").as_uri(),
        "FLASHSALE_MLFLOW_TRACKING_URI": tracking_uri,
        "FLASHSALE_THREADS": "2",
        "FLASHSALE_TASK_RETRY_DELAY_S": "1",
    }
    os.environ.update(env)  # anything in this process that reads get_settings() agrees

    from flashsale_ml import steps
    from flashsale_ml.config import Settings
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store

    settings = Settings(
        home=work / "home",
        storage_root=env["FLASHSALE_STORAGE_ROOT"],
        mlflow_tracking_uri=tracking_uri,
        threads=2,
        # The newest sale of this small shop has ~10 SKUs (30 holdout rows): relax the demand
        # gates as tests/test_demand_plan.py does, so the plan gets its stock section.
        promotion={"demand": {"min_coverage": 0.0, "max_coverage": 1.0, "min_holdout_rows": 1}},
    )
    config = SimulationConfig(users=USERS, days=DAYS, seed=SEED, sale_stock_factor=1000)
    log(f"simulating {USERS} users x {DAYS} days into {settings.lake_uri}")
    shop = simulate(config, open_store(settings.lake_uri))
    steps.validate_data(shop.raw_uri, settings=settings)
    features = steps.build_features(shop.raw_uri, settings=settings)
    from flashsale_ml.models.demand.quantile import QuantileConfig

    # The demand model learns from 40 (sale, SKU) rows here: at its default min_data_in_leaf
    # (20) its trees barely split and every SKU of the campaign gets the same forecast.
    demand = {"config": QuantileConfig(min_data_in_leaf=5, seed=settings.seed, num_threads=2)}
    for kind, flavor, options in (
        ("propensity", "lgbm", {}),
        ("uplift", "s", {}),
        ("demand", "lgbm", demand),
    ):
        log(f"training {kind} ({flavor})")
        trained = steps.train_model(features, kind, flavor, settings=settings, **options)
        registered = steps.register_model(trained["run_id"], kind, settings=settings)
        decision = steps.promote_model(registered["version"], kind, settings=settings)
        if not decision["promoted"]:
            raise RuntimeError(f"the {kind} champion was not promoted: {decision}")
        log(f"{kind} champion: version {registered['version']}")
    return env


# --- the browser --------------------------------------------------------------------------------


def _import_selenium() -> None:
    try:
        import selenium
    except ImportError:
        # Appended, not prepended: the venv's own urllib3, typing_extensions... win.
        sys.path.append(os.environ.get("SELENIUM_PATH", "/tmp/sel"))
        try:
            import selenium  # noqa: F401
        except ImportError:
            sys.exit(
                "Selenium is needed (not a project dependency): "
                "pip install --target /tmp/sel selenium   (or set SELENIUM_PATH)"
            )


@contextlib.contextmanager
def browser(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator:
    _import_selenium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_window_size(width, height)
        yield driver
    finally:
        driver.quit()


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception:  # the page is being replaced
        return ""


def wait_for_text(driver, *texts: str, timeout: float = 60, gone: tuple[str, ...] = ()) -> None:
    """Wait until the page shows every one of ``texts`` and none of ``gone``."""
    deadline = time.monotonic() + timeout
    while True:
        text = body_text(driver)
        if all(t in text for t in texts) and not any(g in text for g in gone):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{driver.current_url}: {texts} not shown after {timeout:.0f} s; page text:\n"
                f"{text[:1500]}"
            )
        time.sleep(0.5)


def click(driver, xpath: str, timeout: float = 30, scope=None) -> object:
    """Click the first displayed element matching ``xpath`` (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        for element in (scope or driver).find_elements("xpath", xpath):
            with contextlib.suppress(Exception):
                if element.is_displayed():
                    driver.execute_script("arguments[0].scrollIntoView({block:'center'})", element)
                    element.click()
                    return element
        if time.monotonic() > deadline:
            raise TimeoutError(f"{driver.current_url}: nothing clickable at {xpath}")
        time.sleep(0.5)


def shoot(driver, path: Path, settle: float = 1.5) -> None:
    time.sleep(settle)  # animations (dialogs, drawers, menus) end
    driver.save_screenshot(str(path))
    log(f"saved {path}")


def _button(label: str) -> str:
    return f"//button[normalize-space(.)='{label}']"


def _open_section(driver, dialog, title: str, open_: bool = True) -> None:
    """Open (or fold) one accordion section of the trigger form."""
    trigger = dialog.find_element(
        "xpath",
        f".//button[@data-part='item-trigger'][normalize-space(.)='{title}']",
    )
    if (trigger.get_attribute("aria-expanded") == "true") != open_:
        driver.execute_script("arguments[0].scrollIntoView({block:'center'})", trigger)
        trigger.click()
        time.sleep(0.8)


def shoot_trigger_form(driver, url: str, out: Path) -> list[Path]:
    """The DAG page's Trigger button opens the form; shoot its first section, then the
    Promotions section (its promotion-type drop-down open, where the UI draws one). Nothing
    is submitted."""
    driver.get(f"{url}/dags/{DAG_ID}")
    wait_for_text(driver, DAG_ID, "Trigger", timeout=90)
    click(driver, _button("Trigger"))
    wait_for_text(driver, "Trigger Dag", "Promotions", timeout=60)
    # (the page holds hidden popovers with role=dialog too)
    dialog = driver.find_element("xpath", "//*[@role='dialog' and contains(., 'Trigger Dag')]")
    # Every section starts folded: open the first one (window, SKUs, date-time pickers).
    _open_section(driver, dialog, "Campaign")
    wait_for_text(driver, "Campaign id", "Start (UTC)", timeout=30)
    driver.execute_script("window.scrollTo(0, 0)")
    first = out / "campaign-trigger-form.png"
    shoot(driver, first)

    _open_section(driver, dialog, "Campaign", open_=False)  # Promotions then fits the window
    _open_section(driver, dialog, "Promotions")
    wait_for_text(driver, "Allowed promotion types", "Extra % discount", timeout=30)
    field = dialog.find_element("id", "element_promotion_types")
    if field.tag_name == "textarea":
        # Airflow 3.3 draws a drop-down (multi-select, labels from values_display) only for an
        # array Param with a top-level ``examples`` (or ``enum``) list; ``items.enum`` alone
        # gives this free-text area of raw values, one per line.
        log(
            "NOTE: 'Allowed promotion types' renders as a text area of raw values, not a "
            "drop-down with labels (the Param has items.enum but no examples)"
        )
    else:
        # A multi-select hides chosen options: drop one so the open drop-down lists it.
        with contextlib.suppress(Exception):
            click(driver, ".//*[@aria-label='Remove Time-limited coupon']", 5, dialog)
        with contextlib.suppress(Exception):
            click(driver, ".//*[@id='element_promotion_types']//input", 5, dialog)
    second = out / "campaign-trigger-form-promotions.png"
    shoot(driver, second)
    return [first, second]


def shoot_approval(driver, url: str, run_id: str, out: Path) -> list[Path]:
    run = urllib.parse.quote(run_id, safe="")
    driver.get(f"{url}/dags/{DAG_ID}/runs/{run}/tasks/approve_plan/required_actions")
    wait_for_text(driver, "Approve", "Reject", "Campaign plan", "Stock and discount", timeout=90)
    if "Not planned:" in body_text(driver):
        log("NOTE: the approval page's stock section says it was not planned")
    first = out / "campaign-approval.png"
    shoot(driver, first)
    # The plan's summary is long: scroll its stock section (a Markdown h2) to the top.
    heading = driver.find_element("xpath", "//h2[normalize-space(.)='Stock and discount']")
    driver.execute_script("arguments[0].scrollIntoView({block:'start'})", heading)
    stock = out / "campaign-approval-stock.png"
    shoot(driver, stock)
    driver.get(f"{url}/required_actions")
    wait_for_text(driver, f"Approve campaign {CAMPAIGN_ID}?", timeout=90)
    second = out / "campaign-required-actions.png"
    shoot(driver, second)
    return [first, stock, second]


def shoot_mlflow_link(driver, url: str, run_id: str, out: Path) -> list[Path]:
    run = urllib.parse.quote(run_id, safe="")
    # Airflow 3.3 lists a task's extra links under "Extra Links" on its Details tab.
    driver.get(f"{url}/dags/{DAG_ID}/runs/{run}/tasks/plan_campaign/details")
    wait_for_text(driver, "plan_campaign", "Extra Links", "MLflow run", timeout=90)
    with contextlib.suppress(Exception):  # the button in view
        button = driver.find_element("xpath", "//a[normalize-space(.)='MLflow run']")
        driver.execute_script("arguments[0].scrollIntoView({block:'center'})", button)
    path = out / "campaign-mlflow-link.png"
    shoot(driver, path)
    return [path]


FAILED: list[str] = []


def attempt(step, driver, *args) -> list[Path]:
    """Run one screenshot step; on failure save what the browser shows
    (``<tmp>/<step>.failed.png``), log why, and go on with the next step."""
    try:
        return step(driver, *args)
    except Exception as exc:
        FAILED.append(step.__name__)
        debug = Path(tempfile.gettempdir()) / f"{step.__name__}.failed.png"
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(debug))
        log(f"{step.__name__} FAILED ({exc}); the browser showed {debug}")
        return []


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary folder")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="after the screenshots, keep the servers up (URLs in <workdir>/ui.json) until "
        "Ctrl-C / SIGTERM, then approve and stop",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: every server is stopped, the database dropped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    from flashsale_ml.devstack import AirflowClient, AirflowStack, MlflowServer

    args.out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="campaign-ui-")))
        else:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        mlflow = stack.enter_context(MlflowServer(work, work / "mlflow.db", str(work / "mlruns")))
        log(f"MLflow at {mlflow.url}")
        env = build_world(work, mlflow.url)
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"  # the UI needs no login
        log("starting Airflow")
        airflow = stack.enter_context(
            AirflowStack(work, REPO / "dags", REPO / "plugins", env=env, parallelism=4)
        )
        log(f"Airflow at {airflow.url} ({airflow.timings})")
        # "All admins": POST /auth/token hands out an admin token whatever the password.
        api = AirflowClient(
            airflow.url,
            password="-",
            diagnostics=airflow.diagnostics,
            parked=airflow.parked_worker_exited,
        )
        api.wait_for_dag(DAG_ID, timeout=180)
        driver = stack.enter_context(browser())
        # Sets the UI's token cookie (the SPA would redirect here on its own).
        driver.get(f"{airflow.url}/auth/token/login?next=/")
        taken = attempt(shoot_trigger_form, driver, airflow.url, args.out)

        run_id = api.trigger(DAG_ID, form(), note="Screenshots of the campaign UI")["dag_run_id"]
        log(f"triggered {run_id}; waiting for the approval")
        api.wait_for_action(DAG_ID, run_id, "approve_plan", timeout=900)
        (work / "ui.json").write_text(
            json.dumps({"airflow": airflow.url, "mlflow": mlflow.url, "run_id": run_id})
        )
        try:
            taken += attempt(shoot_approval, driver, airflow.url, run_id, args.out)
            taken += attempt(shoot_mlflow_link, driver, airflow.url, run_id, args.out)
            if args.keep:
                log(f"servers kept up ({work / 'ui.json'}); Ctrl-C or SIGTERM to end")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(5)
        finally:
            log("approving, so the run finishes")
            api.approve(DAG_ID, run_id, "approve_plan")
            run = api.wait_for_run(DAG_ID, run_id, timeout=300)
            log(f"run {run_id}: {run['state']}")
            if run["state"] != "success":
                log(api.explain(DAG_ID, run_id))
        log("screenshots:\n  " + "\n  ".join(str(p) for p in taken))
    if FAILED:
        sys.exit(f"{len(FAILED)} screenshot step(s) failed: {', '.join(FAILED)}")


if __name__ == "__main__":
    main()
