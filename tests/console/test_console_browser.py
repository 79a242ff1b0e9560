"""The web console in a real browser (headless chromium driven by selenium)
against a real member with --enable-console and auth on.

Screenshots of each step go to the test's tmp dir and are copied to
$ETCDCORE_SCREENSHOTS, or tests/console/screenshots/ (ignored by git), for a
reviewer to look at.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness import Member

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "chromium and chromedriver are not installed "
        "(apt-get install chromium chromium-driver; CI installs them)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

T = TypeVar("T")
WAIT = 15.0
#: Whether a canvas has a pixel of the charts' line colour.
LINE_DRAWN = """
const c = document.querySelector(arguments[0]);
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
for (let i = 0; i < px.length; i += 4) {
  if (px[i] === 0x24 && px[i + 1] === 0x57 && px[i + 2] === 0xb5) return true;
}
return false;
"""
SCREENSHOTS = Path(os.environ.get("ETCDCORE_SCREENSHOTS") or Path(__file__).parent / "screenshots")


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """A member with the console and auth on; root, and "reader" who may only read."""
    m = Member(
        data_dir=tmp_path_factory.mktemp("browser") / "default.etcd", extra=["--enable-console"]
    ).start()
    http_ready(m)
    for cmd in (
        "user add root:rootpw",
        "user add reader:readerpw",
        "role add reader",
        "role grant-permission reader read / --prefix",
        "user grant-role reader reader",
        "auth enable",
    ):
        m.etcdctl(*cmd.split())
    try:
        yield m
    finally:
        m.stop()


def root_ctl(m: Member, *args: str) -> str:
    return m.etcdctl("--user=root:rootpw", *args).stdout


def http_ready(m: Member) -> Member:
    """Wait until the member's HTTP side answers: it starts a moment after
    the gRPC listener the harness waits for (503 until then)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{m.endpoint}/console/", timeout=5).close()
            break
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            time.sleep(0.05)
    return m


def root_put_bytes(m: Member, key: str, value: bytes, lease: str = "0") -> None:
    """Put any bytes through the JSON gateway, as root."""

    def post(path: str, body: dict[str, str], token: str = "") -> Any:
        headers = {"Authorization": token} if token else {}
        req = urllib.request.Request(
            f"http://{m.endpoint}{path}", data=json.dumps(body).encode(), headers=headers
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    token = post("/v3/auth/authenticate", {"name": "root", "password": "rootpw"})["token"]
    b64 = base64.b64encode
    post(
        "/v3/kv/put",
        {"key": b64(key.encode()).decode(), "value": b64(value).decode(), "lease": lease},
        token,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shot(
    browser: WebDriver, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], None]:
    """Save a screenshot named after the test and ``step``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(step: str) -> None:
        name = f"{request.node.name}-{step}.png"
        browser.save_screenshot(str(tmp_path / name))
        shutil.copy(tmp_path / name, SCREENSHOTS / name)

    return take


# -- helpers -------------------------------------------------------------------------------


def wait_for(what: Callable[[], T], timeout: float = WAIT, message: str = "") -> T:
    """Poll until ``what`` returns something truthy (exceptions count as no)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = what()
            if got:
                return got
            last = got
        except (WebDriverException, AssertionError, LookupError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message or what}: {last!r}")


def find(browser: WebDriver, css: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, css)


def visible(browser: WebDriver, css: str) -> list[WebElement]:
    return [e for e in browser.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def login(
    browser: WebDriver,
    m: Member,
    user: str,
    password: str,
    prefix: str = "",
    shot: Callable[[str], None] | None = None,
) -> None:
    """Open the console (at ``prefix``) as ``user``, logging out whoever was
    in (with ``shot``, a screenshot of the filled-in login form)."""
    browser.get(f"http://{m.endpoint}/console/#{prefix}")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()  # a new fragment alone would not reload the page
    wait_for(lambda: find(browser, "#login").is_displayed(), message="the login form")
    find(browser, "#login-user").clear()
    find(browser, "#login-user").send_keys(user)
    find(browser, "#login-password").send_keys(password)
    if shot is not None:
        shot("login")
    find(browser, "#login-submit").click()
    wait_for(lambda: find(browser, "#app").is_displayed(), message="the console after login")
    wait_for(lambda: user in find(browser, "#whoami").text, message="the user's name")


def child(browser: WebDriver, name: str) -> WebElement:
    """The entry ``name`` of the key tree."""
    for li in browser.find_elements(By.CSS_SELECTOR, "#children li"):
        if li.find_element(By.CSS_SELECTOR, ".name").text == name:
            return li
    raise LookupError(name)


def names(browser: WebDriver) -> list[str]:
    """The entries of the key tree, in order."""
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#children li .name")]


def tab(browser: WebDriver, name: str) -> None:
    find(browser, f"nav button[data-tab={name}]").click()
    wait_for(lambda: find(browser, f"#tab-{name}").is_displayed(), message=f"the {name} tab")


def accept_confirm(browser: WebDriver) -> None:
    wait_for(lambda: browser.switch_to.alert, message="the confirmation").accept()


# -- the tests -----------------------------------------------------------------------------


def test_browsing_a_prefix_lists_its_keys_and_counts_its_subdirectories(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    for key in ("/shop/a", "/shop/b", "/shop/svc/x", "/shop/svc/y", "/shop/svc/z/deep"):
        root_ctl(secured, "put", key, "v")
    login(browser, secured, "root", "rootpw", "/shop/")
    wait_for(lambda: child(browser, "svc/"), message="the svc/ directory")
    assert "5 keys" in find(browser, "#prefix-count").text
    assert names(browser) == ["a", "b", "svc/"]
    wait_for(lambda: child(browser, "svc/").find_element(By.CSS_SELECTOR, ".count").text == "3")
    shot("prefix")
    child(browser, "svc/").click()
    wait_for(lambda: names(browser) == ["x", "y", "z/"], message="the svc/ children")
    assert "3 keys" in find(browser, "#prefix-count").text
    shot("subdirectory")


def test_a_large_prefix_is_paged(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    ops = "\n".join(f'put /many/k{i:03d} "v"' for i in range(60))
    secured.etcdctl("--user=root:rootpw", "txn", input=f"\n{ops}\n\n\n")
    login(browser, secured, "root", "rootpw", "/many/")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#children li")) == 50)
    assert find(browser, "#more").is_displayed()
    find(browser, "#more").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#children li")) == 60)
    wait_for(lambda: not find(browser, "#more").is_displayed(), message="no more pages")
    shot("paged")


def test_a_keys_value_metadata_history_and_diff_are_shown(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    for port in (8080, 8081, 9090):
        root_ctl(secured, "put", "/cfg/db", f'{{"host": "db1", "port": {port}}}')
    lease = root_ctl(secured, "lease", "grant", "600").split()[1]
    # Not UTF-8, so not something etcdctl's command line can carry.
    root_put_bytes(secured, "/cfg/bin", b"\x01\x02binary\xff", lease=str(int(lease, 16)))
    login(browser, secured, "root", "rootpw", "/cfg/")
    wait_for(lambda: child(browser, "db")).click()
    wait_for(lambda: find(browser, "#value-format").text == "JSON", message="the JSON value")
    assert '"port": 9090' in find(browser, "#value").text  # pretty-printed
    meta = find(browser, "#key-meta").text
    assert "version 3" in meta
    find(browser, "#history-btn").click()
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr"))
    assert [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows] == ["3", "2", "1"]
    # Diff the first version (A) against the newest (B).
    rows[2].find_element(By.CSS_SELECTOR, "input[name=diff-a]").click()
    rows[0].find_element(By.CSS_SELECTOR, "input[name=diff-b]").click()
    find(browser, "#diff-btn").click()
    diff = wait_for(lambda: find(browser, "#diff").is_displayed() and find(browser, "#diff"))
    removed = [" ".join(e.text.split()) for e in diff.find_elements(By.CSS_SELECTOR, ".del")]
    added = [" ".join(e.text.split()) for e in diff.find_elements(By.CSS_SELECTOR, ".add")]
    assert removed == ['- "port": 8080'] and added == ['+ "port": 9090']
    shot("history-diff")
    child(browser, "bin").click()
    wait_for(lambda: find(browser, "#value-format").text == "hex", message="the hex view")
    assert "01 02 62 69 6e 61 72 79" in find(browser, "#value").text
    assert lease.lower().lstrip("0") in find(browser, "#key-meta").text
    wait_for(lambda: "s left" in find(browser, "#lease-ttl").text, message="the lease TTL")
    shot("binary-with-lease")


def test_a_deleted_and_recreated_keys_earlier_lives_are_shown_on_request(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    root_ctl(secured, "put", "/gen/k", "first")
    root_ctl(secured, "put", "/gen/k", "second")
    root_ctl(secured, "del", "/gen/k")
    root_ctl(secured, "put", "/gen/k", "third")
    login(browser, secured, "root", "rootpw", "/gen/")
    wait_for(lambda: child(browser, "k")).click()
    wait_for(lambda: find(browser, "#value").text == "third")
    find(browser, "#history-btn").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")) == 1)
    find(browser, "#history-earlier").click()

    def values() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
        return [r.find_elements(By.TAG_NAME, "td")[4].text for r in rows]

    wait_for(lambda: values() == ["third", "(deleted)", "second", "first"], message="four rows")
    rows = browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    rows[3].find_element(By.CSS_SELECTOR, "input[name=diff-a]").click()
    find(browser, "#diff-btn").click()
    diff = wait_for(lambda: find(browser, "#diff").is_displayed() and find(browser, "#diff"))
    assert [e.text for e in diff.find_elements(By.CSS_SELECTOR, ".del")] == ["- first"]
    assert [e.text for e in diff.find_elements(By.CSS_SELECTOR, ".add")] == ["+ third"]
    shot("earlier-lives")


def test_restore_this_revision_puts_the_old_value_back_on_the_same_lease(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    lease = root_ctl(secured, "lease", "grant", "600").split()[1]
    root_ctl(secured, "put", "/restore/flag", "good", f"--lease={lease}")
    root_ctl(secured, "put", "/restore/flag", "broken", f"--lease={lease}")
    login(browser, secured, "root", "rootpw", "/restore/")
    wait_for(lambda: child(browser, "flag")).click()
    wait_for(lambda: find(browser, "#value").text == "broken")
    find(browser, "#history-btn").click()
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr"))
    rows[1].find_element(By.CSS_SELECTOR, "button.restore").click()
    accept_confirm(browser)
    wait_for(lambda: find(browser, "#value").text == "good", message="the restored value")
    kv = json.loads(root_ctl(secured, "get", "/restore/flag", "-w", "json"))["kvs"][0]
    assert base64.b64decode(kv["value"]) == b"good"
    assert kv["lease"] == int(lease, 16)  # the key stays on its lease
    shot("restored")


def test_a_put_arrives_live_in_the_watch_tab_and_pause_holds_events_back(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    login(browser, secured, "root", "rootpw")
    tab(browser, "watch")
    find(browser, "#watch-prefix").send_keys("/live/")
    find(browser, "#watch-start").click()
    wait_for(lambda: "watching from" in find(browser, "#watch-status").text)
    root_ctl(secured, "put", "/live/k", "one")
    row = wait_for(lambda: visible(browser, "#watch-events tr.event"), message="the PUT")[0]
    assert row.find_element(By.CSS_SELECTOR, ".type").text == "PUT"
    assert row.find_element(By.CSS_SELECTOR, ".key").text == "/live/k"
    assert row.find_element(By.CSS_SELECTOR, ".value").text == "one"
    root_ctl(secured, "put", "/live/k", "two")
    root_ctl(secured, "put", "/other/k", "not watched")
    wait_for(lambda: len(visible(browser, "#watch-events tr.event")) == 2)
    newest = visible(browser, "#watch-events tr.event")[0]
    assert newest.find_element(By.CSS_SELECTOR, ".value .del").text == "one"
    assert newest.find_element(By.CSS_SELECTOR, ".value .add").text == "two"
    shot("live")

    find(browser, "#watch-pause").click()
    root_ctl(secured, "del", "/live/k")
    wait_for(lambda: "1 event(s) waiting" in find(browser, "#watch-status").text)
    assert len(visible(browser, "#watch-events tr.event")) == 2
    find(browser, "#watch-pause").click()  # resume
    wait_for(lambda: len(visible(browser, "#watch-events tr.event")) == 3)
    Select(find(browser, "#watch-type")).select_by_visible_text("DELETE")
    rows = visible(browser, "#watch-events tr.event")
    assert [r.find_element(By.CSS_SELECTOR, ".type").text for r in rows] == ["DELETE"]
    shot("filtered")
    find(browser, "#watch-stop").click()


def test_revoking_a_lease_in_the_leases_tab_deletes_its_keys(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    lease = root_ctl(secured, "lease", "grant", "300").split()[1]
    root_ctl(secured, "put", "/svc/instance-1", "10.0.0.1", f"--lease={lease}")
    login(browser, secured, "root", "rootpw")
    tab(browser, "leases")
    row_css = f'#leases tr.lease[data-id="{lease.lower().lstrip("0")}"]'
    row = wait_for(lambda: find(browser, row_css), message="the lease's row")
    assert "/svc/instance-1" in row.text
    first = wait_for(lambda: int(row.find_element(By.CSS_SELECTOR, ".ttl").text.rstrip("s")))
    wait_for(lambda: int(row.find_element(By.CSS_SELECTOR, ".ttl").text.rstrip("s")) < first,
             message="the TTL counting down")  # fmt: skip
    shot("leases")
    row.find_element(By.CSS_SELECTOR, "button.revoke").click()
    accept_confirm(browser)
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, row_css), message="row gone")
    assert root_ctl(secured, "get", "/svc/instance-1") == ""
    shot("revoked")


def test_the_cluster_tab_shows_the_members_status_and_live_charts(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    login(browser, secured, "root", "rootpw")
    tab(browser, "cluster")
    member = wait_for(lambda: visible(browser, "#members tr.member"), message="a member")[0]
    assert "healthy" in member.text and "leader" in member.text
    summary = find(browser, "#cluster-summary").text
    assert "raft term" in summary and "db size in use" in summary
    assert find(browser, "#alarms").text == "none"
    for i in range(5):
        root_ctl(secured, "put", f"/chart/{i}", "v")
    # A chart draws its line (in the console's blue, #2457b5) once it has two
    # rates, from three samples taken 2 s apart.
    for chart in ("#chart-puts", "#chart-watch", "#chart-fsync"):
        wait_for(
            lambda c=chart: browser.execute_script(LINE_DRAWN, c),
            message=f"{chart}'s line",
        )
    shot("cluster")


def test_a_wrong_password_is_refused_on_the_login_form(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    browser.get(f"http://{secured.endpoint}/console/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    wait_for(lambda: find(browser, "#login").is_displayed(), message="the login form")
    find(browser, "#login-user").clear()
    find(browser, "#login-user").send_keys("root")
    find(browser, "#login-password").send_keys("wrong")
    find(browser, "#login-submit").click()
    wait_for(
        lambda: (
            find(browser, "#login-error").text
            == "etcdserver: authentication failed, invalid user ID or password"
        ),
        message="etcd's error text",
    )
    assert not find(browser, "#app").is_displayed()
    shot("refused")


def test_a_read_only_user_sees_no_write_buttons_and_cannot_write(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    root_ctl(secured, "put", "/ro/setting", "off")
    root_ctl(secured, "put", "/ro/setting", "on")
    lease = root_ctl(secured, "lease", "grant", "300").split()[1]
    root_ctl(secured, "put", "/ro/leased", "x", f"--lease={lease}")
    login(browser, secured, "reader", "readerpw", "/ro/", shot)
    assert "read-only" in find(browser, "#whoami").text
    wait_for(lambda: child(browser, "setting")).click()
    wait_for(lambda: find(browser, "#value").text == "on")
    find(browser, "#history-btn").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")) == 2)
    assert visible(browser, ".write") == []
    assert visible(browser, "#new-key, #edit, #delete, button.restore") == []
    shot("keys")
    tab(browser, "leases")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#leases tr.lease"))
    assert visible(browser, "button.revoke") == []
    shot("leases")
    # The server refuses what the page hides: a put made from the page with
    # the reader's token.
    reply = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/v3/kv/put', {method: 'POST', headers: {Authorization:"
        " sessionStorage.getItem('etcdcore.token')},"
        " body: JSON.stringify({key: btoa('/ro/setting'), value: btoa('off')})})"
        ".then(r => r.json().then(b => done([r.status, b.message])));"
    )
    assert reply == [403, "etcdserver: permission denied"]
    assert root_ctl(secured, "get", "/ro/setting", "--print-value-only").strip() == "on"


def test_without_auth_the_console_needs_no_login_and_puts_and_deletes_keys(
    tmp_path: Path, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    m = http_ready(Member(data_dir=tmp_path / "open.etcd", extra=["--enable-console"]).start())
    try:
        m.etcdctl("put", "/open/existing", "x")
        browser.get(f"http://{m.endpoint}/console/#/open/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        wait_for(lambda: child(browser, "existing"), message="the key tree")
        assert not find(browser, "#login").is_displayed()
        assert find(browser, "#whoami").text == "auth disabled"
        find(browser, "#new-key").click()
        find(browser, "#editor-key").send_keys("new")  # after the prefix it starts with
        find(browser, "#editor-value").send_keys("hello")
        find(browser, "#editor-save").click()
        wait_for(lambda: find(browser, "#value").text == "hello", message="the new key")
        assert m.etcdctl("get", "/open/new", "--print-value-only").stdout.strip() == "hello"
        shot("created")
        find(browser, "#delete").click()
        accept_confirm(browser)
        wait_for(lambda: names(browser) == ["existing"], message="the key gone from the tree")
        assert m.etcdctl("get", "/open/new").stdout == ""
    finally:
        m.stop()


def test_history_stops_at_the_compaction_and_says_so(
    secured: Member, browser: WebDriver, shot: Callable[[str], None]
) -> None:
    # Last in the module: the compaction drops older revisions of every key.
    root_ctl(secured, "put", "/cmp/k", "v1")
    root_ctl(secured, "put", "/cmp/k", "v2")
    revision = json.loads(root_ctl(secured, "get", "/cmp/k", "-w", "json"))["header"]["revision"]
    root_ctl(secured, "compact", str(revision))
    root_ctl(secured, "put", "/cmp/k", "v3")
    login(browser, secured, "root", "rootpw", "/cmp/")
    wait_for(lambda: child(browser, "k")).click()
    wait_for(lambda: find(browser, "#value").text == "v3")
    find(browser, "#history-btn").click()
    wait_for(lambda: "compacted" in find(browser, "#history-note").text, message="the note")
    rows = browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[4].text for r in rows] == ["v3", "v2"]
    shot("compacted")
