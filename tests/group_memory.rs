//! Memory held per idle group by a windowed-mean rule, measured with a counting allocator:
//! 100,000 groups (host × path) each send points until their window has emitted, then go idle;
//! the live heap growth divided by the number of groups must stay under 1 KiB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use alertd::engine::{Engine, TaskConfig};
use alertd::ingest::line_protocol::parse_line;
use alertd::rules::check::compile_source;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RULE: &str = r#"
stream
    |from()
        .measurement('disk')
        .groupBy('host', 'path')
    |window()
        .period(1m)
        .every(1m)
    |mean('used_percent')
        .as('stat')
    |alert()
        .id('{{ index .Tags "host" }}/disk_used')
        .warn(lambda: "stat" > 80)
        .crit(lambda: "stat" > 90)
"#;

#[test]
fn idle_group_state_of_a_windowed_mean_rule_is_under_1_kib() {
    const GROUPS: usize = 100_000;
    let plan = Arc::new(compile_source("disk", RULE).expect("rule compiles"));
    let mut engine = Engine::new(vec![plan], &TaskConfig::default());

    // Warm up shared structures (name cache, routing) with one group, then measure.
    let warm = "disk,device=sda1,fstype=ext4,host=warmup,mode=rw,path=/ used_percent=40 0";
    engine.process(None, None, &parse_line(warm, 1).unwrap(), 0);
    let before = LIVE.load(Ordering::Relaxed);

    let mut line = String::new();
    // Two points per group 70 s apart: the second closes the first window, so every group has
    // emitted and holds just one buffered point, as an idle group between windows does.
    for round in 0..2i64 {
        let t = 1_000_000_000 + round * 70_000_000_000;
        for g in 0..GROUPS {
            line.clear();
            line.push_str(&format!(
                "disk,device=sda1,fstype=ext4,host=node{:06},mode=rw,path=/var/lib/docker total=3958241280000i,free=1979120640000i,used=1979120640000i,used_percent=50.0,inodes_total=244195328i,inodes_free=240000000i,inodes_used=4195328i {t}",
                g
            ));
            let parsed = parse_line(&line, 1).unwrap();
            engine.process(None, None, &parsed, t);
        }
        let _ = engine.drain_events();
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(engine.tasks()[0].groups(), GROUPS + 1);
    let per_group = (after - before) as f64 / GROUPS as f64;
    let estimate =
        (engine.tasks()[0].state_bytes() + engine.series_bytes().1) as f64 / (GROUPS + 1) as f64;
    eprintln!("heap per idle group: {per_group:.0} bytes (state_bytes estimate {estimate:.0})");
    assert!(per_group < 1024.0, "{per_group:.0} bytes per idle group");
    assert!(
        per_group > 100.0,
        "measurement looks wrong: {per_group:.0} bytes per group"
    );
}

#[test]
fn series_of_a_long_lived_group_are_forgotten_when_idle() {
    // One host whose containers come and go: the group lives on, each container's series idles.
    let rule =
        "stream|from().measurement('docker').groupBy('host')|alert().crit(lambda: \"cpu\" > 90)";
    let plan = Arc::new(compile_source("docker", rule).expect("rule compiles"));
    let cfg = TaskConfig {
        group_expiry: 60_000_000_000,
    };
    let mut engine = Engine::new(vec![plan], &cfg);
    let mut line = String::new();
    let mut sizes = Vec::new();
    for c in 0..20_000i64 {
        let t = c * 10_000_000_000; // a new container every 10 s
        line.clear();
        line.push_str(&format!("docker,host=h1,container=c{c:06} cpu=1 {t}"));
        engine.process(None, None, &parse_line(&line, 1).unwrap(), t);
        let _ = engine.drain_events();
        if c % 5_000 == 4_999 {
            sizes.push(engine.tasks()[0].state_bytes());
        }
    }
    assert_eq!(engine.tasks()[0].groups(), 1);
    // 20,000 containers seen, about 6 alive within the expiry: the state must not grow with them.
    let (first, last) = (sizes[0], *sizes.last().unwrap());
    assert!(
        last <= first + 4096,
        "state grew from {first} to {last} bytes: {sizes:?}"
    );
    assert!(last < 64 * 1024, "{last} bytes for one group");
}
