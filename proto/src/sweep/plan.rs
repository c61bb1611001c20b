//! A sweep: the Cartesian product of values of config keys, trained as one
//! job. Its axes come from the config's `[sweep]` table (`values`, a map
//! from a config key to a list of values or an integer range `"1..50"`) and
//! from `--sweep KEY=V1,V2,...` or `--sweep KEY=A..B` (which replaces the
//! config's axis of the same key); each point is the base config with one
//! value per axis set, named `key=value,key=value` (its run directory under
//! the sweep's; numbers named alike however they were written: `4` and
//! `4.0` are `4`). A study is several grids (`[[sweep.grids]]`, e.g. one
//! per method): each fixes some keys and has its own axes, crossed with
//! the shared ones, and its points are named `method=NAME,…`; the sweep is
//! their union. Checked here, before any worker starts: every point's
//! config must validate, every error naming the key.
use super::axes::{axis_of, check_axes, key_err, parse_axis, Axis};
use super::points::{grid_points, point_config, product, Point};
use crate::config::Config;
use crate::config::ConfigError;

/// A sweep, checked.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The shared axes (the whole sweep's when it has no grids).
    pub axes: Vec<Axis>,
    pub ranks_per_point: usize,
    /// Tries after a point's first failure before it is recorded as failed.
    pub point_retries: usize,
    pub points: Vec<Point>,
}

impl Sweep {
    /// The sweep of `base` (its `[sweep]` table) and the `--sweep` axes
    /// `cli` (replacing the table's axis of the same key), with
    /// `ranks_per_point` from the command line or the table. `None` when
    /// there is no axis at all. Every point's config is validated.
    pub fn plan(
        base: &Config,
        cli: &[String],
        ranks_per_point: Option<usize>,
        origin: &str,
    ) -> Result<Option<Sweep>, ConfigError> {
        let mut axes = Vec::new();
        for (k, v) in &base.sweep.values {
            axes.push(axis_of(k, v, &format!("sweep.values.{k}"))?);
        }
        // A `--sweep` axis that a grid sweeps replaces it in those grids;
        // any other is shared (replacing the table's axis of its key).
        let mut in_grids = Vec::new();
        for arg in cli {
            let a = parse_axis(arg)?;
            if base
                .sweep
                .grids
                .iter()
                .any(|g| g.values.contains_key(&a.key))
            {
                in_grids.push(a);
                continue;
            }
            match axes.iter_mut().find(|x| x.key == a.key) {
                Some(x) => *x = a,
                None => axes.push(a),
            }
        }
        if axes.is_empty() && base.sweep.grids.is_empty() {
            return Ok(None);
        }
        let rpp = ranks_per_point.unwrap_or(base.sweep.ranks_per_point as usize);
        if rpp == 0 {
            return Err(key_err(
                "sweep.ranks_per_point",
                "must be at least 1, got 0",
            ));
        }
        check_axes(&axes)?;
        let points = if base.sweep.grids.is_empty() {
            product(&axes, None, &[])?
        } else {
            grid_points(base, &axes, &in_grids)?
        };
        for p in &points {
            let config = point_config(base, p, origin)?;
            if config.check_world(rpp).is_err() {
                return Err(key_err(
                    "train.batch_size",
                    format!(
                        "{} (point {}) does not divide by the {rpp} ranks per point",
                        config.train.batch_size, p.name
                    ),
                ));
            }
        }
        Ok(Some(Sweep {
            axes,
            ranks_per_point: rpp,
            point_retries: base.sweep.point_retries as usize,
            points,
        }))
    }

    /// The columns of a report: `method` for a study, then every key swept
    /// anywhere, in the order first met.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for (k, _) in self.points.iter().flat_map(|p| &p.values) {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
        cols
    }

    /// The `--sweep` and `--ranks-per-point` arguments that give workers this sweep.
    pub fn worker_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for a in &self.axes {
            v.push("--sweep".to_string());
            v.push(format!("{}={}", a.key, a.values.join(",")));
        }
        v.push("--ranks-per-point".into());
        v.push(self.ranks_per_point.to_string());
        v
    }

    /// How many groups `ranks` ranks make, or why they cannot.
    pub fn groups(&self, ranks: usize) -> Result<usize, String> {
        if ranks == 0 || !ranks.is_multiple_of(self.ranks_per_point) {
            return Err(format!(
                "{ranks} ranks do not divide into groups of --ranks-per-point {}",
                self.ranks_per_point
            ));
        }
        Ok(ranks / self.ranks_per_point)
    }
}

#[cfg(test)]
mod tests {
    use super::super::axes::split_values;
    use super::*;
    use crate::config;

    fn base(text: &str) -> Config {
        config::parse(text, "test", &[]).unwrap()
    }

    #[test]
    fn the_product_varies_the_first_axis_slowest_and_names_points() {
        let s = Sweep::plan(
            &base(""),
            &["model.beta=1,4".into(), "train.seed=1,2,3".into()],
            Some(2),
            "t",
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = s.points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names[0], "model.beta=1,train.seed=1");
        assert_eq!(names[5], "model.beta=4,train.seed=3");
        assert_eq!(s.points.len(), 6);
        assert_eq!(s.groups(4), Ok(2));
        assert!(s.groups(3).is_err());
        assert_eq!(
            s.worker_args(),
            vec![
                "--sweep",
                "model.beta=1,4",
                "--sweep",
                "train.seed=1,2,3",
                "--ranks-per-point",
                "2"
            ]
        );
    }

    #[test]
    fn the_config_table_gives_axes_and_the_command_line_replaces_them() {
        let b = base("[sweep]\nranks_per_point = 1\n[sweep.values]\n\"model.beta\" = [1.0, 2.0]\n\"model.kind\" = [\"mlp\", \"conv\"]\n");
        let s = Sweep::plan(&b, &["model.beta=8".into()], None, "t")
            .unwrap()
            .unwrap();
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.points[1].sets, vec!["model.beta=8", "model.kind=conv"]);
        let c = point_config(&b, &s.points[1], "t").unwrap();
        assert_eq!(c.model.beta, 8.0);
        assert_eq!(c.checkpoint.url, "");
        let mut with_url = b.clone();
        with_url.raw.checkpoint.url = "s3://bucket/runs/7".into();
        let c = point_config(&with_url, &s.points[1], "t").unwrap();
        assert_eq!(
            c.checkpoint.url,
            format!("s3://bucket/runs/7/{}/", s.points[1].name)
        );
        assert!(c.sweep.values.is_empty());
        assert!(Sweep::plan(&base(""), &[], None, "t").unwrap().is_none());
    }

    #[test]
    fn bad_axes_are_named() {
        let err = |args: &[&str], rpp| {
            let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            Sweep::plan(&base(""), &a, rpp, "t")
                .unwrap_err()
                .to_string()
        };
        let e = err(&["model.betta=1,2"], None);
        assert!(e.contains("betta"), "{e}");
        let e = err(&["model.beta=1,high"], None);
        assert!(e.contains("model.beta"), "{e}");
        let e = err(&["train.batch_size=128,100"], Some(3));
        assert!(
            e.contains("train.batch_size") && e.contains("ranks per point"),
            "{e}"
        );
        let e = err(&["model.beta"], None);
        assert!(e.contains("--sweep model.beta"), "{e}");
        let e = err(&["sweep.ranks_per_point=1,2"], None);
        assert!(e.contains("sweep"), "{e}");
    }

    #[test]
    fn point_names_and_values_carry_no_credential() {
        let s = Sweep::plan(
            &base(""),
            &["data.url=https://u:topsecret@h/a?sig=one,https://u:topsecret@h/a?sig=two".into()],
            None,
            "t",
        )
        .unwrap()
        .unwrap();
        assert_ne!(s.points[0].name, s.points[1].name);
        for p in &s.points {
            assert!(!p.name.contains("topsecret"), "{}", p.name);
            assert!(!format!("{:?}", p.values).contains("topsecret"));
            assert!(p.sets[0].contains("topsecret"));
        }
    }

    #[test]
    fn a_study_is_the_union_of_its_grids_crossed_with_the_shared_seeds() {
        let b = base(
            "[sweep]\npoint_retries = 2\n[sweep.values]\n\"train.seed\" = \"1..3\"\n\
             [[sweep.grids]]\nname = \"beta_vae\"\nvalues = { \"model.beta\" = [1.0, 4.0] }\n\
             [[sweep.grids]]\nname = \"beta_tc_vae\"\nset = { \"model.objective\" = \"btcvae\" }\n\
             values = { \"model.tc_weight\" = [2, 6] }\n",
        );
        let s = Sweep::plan(&b, &[], None, "t").unwrap().unwrap();
        assert_eq!(s.points.len(), 12);
        assert_eq!(s.point_retries, 2);
        assert_eq!(
            s.points[0].name,
            "method=beta_vae,model.beta=1,train.seed=1"
        );
        assert_eq!(
            s.points[11].name,
            "method=beta_tc_vae,model.tc_weight=6,train.seed=3"
        );
        assert_eq!(s.points[11].index, 11);
        assert_eq!(
            s.columns(),
            ["method", "model.beta", "train.seed", "model.tc_weight"]
        );
        let c = point_config(&b, &s.points[7], "t").unwrap();
        assert_eq!(c.train.seed, 2);
        assert!(c.sweep.grids.is_empty());
        // `--sweep` replaces a shared axis in every grid, and a grid's axis
        // in the grids that sweep its key.
        let s = Sweep::plan(
            &b,
            &["train.seed=7..8".into(), "model.tc_weight=3".into()],
            None,
            "t",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.points.len(), 6);
        assert_eq!(
            s.points[5].name,
            "method=beta_tc_vae,model.tc_weight=3,train.seed=8"
        );
    }

    #[test]
    fn bad_grids_and_ranges_are_named() {
        let bad = |extra: &str, key: &str| {
            let e = config::parse(&format!("[sweep]\n{extra}"), "t", &[])
                .and_then(|c| Sweep::plan(&c, &[], None, "t").map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        };
        bad("[[sweep.grids]]\nname = \"a b\"\n", "sweep.grids[0].name");
        bad(
            "[[sweep.grids]]\nname = \"a\"\n[[sweep.grids]]\nname = \"a\"\n",
            "sweep.grids[1].name",
        );
        bad(
            "[[sweep.grids]]\nname = \"a\"\nvalues = { \"model.beta\" = 3 }\n",
            "sweep.grids[0].values.model.beta",
        );
        bad(
            "[sweep.values]\n\"train.seed\" = \"9..1\"\n",
            "sweep.values.train.seed",
        );
        bad(
            "[sweep.values]\n\"train.seed\" = \"0..100000000\"\n",
            "sweep.values.train.seed",
        );
    }

    #[test]
    fn point_names_are_the_same_however_a_number_was_written() {
        let from_cli = Sweep::plan(&base(""), &["model.beta=4,1e-3".into()], None, "t")
            .unwrap()
            .unwrap();
        let from_toml = Sweep::plan(
            &base("[sweep.values]\n\"model.beta\" = [4.0, 0.001]\n"),
            &[],
            None,
            "t",
        )
        .unwrap()
        .unwrap();
        let names = |s: &Sweep| s.points.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&from_cli), ["model.beta=4", "model.beta=0.001"]);
        assert_eq!(names(&from_cli), names(&from_toml));
        let seeds = Sweep::plan(&base(""), &["train.seed=1..50".into()], None, "t")
            .unwrap()
            .unwrap();
        assert_eq!(seeds.points.len(), 50);
        assert_eq!(seeds.points[49].name, "train.seed=50");
    }

    #[test]
    fn values_split_outside_brackets() {
        assert_eq!(
            split_values("[32, 64],[8, 16]"),
            vec!["[32, 64]".to_string(), "[8, 16]".to_string()]
        );
    }
}
