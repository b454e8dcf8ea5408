//! The layered layout of a workflow's DAG: each task on the layer of its
//! longest path from a root, ordered within the layer by the barycentre of
//! its parents (a few sweeps down and up), at fixed grid coordinates that
//! the browser draws as SVG.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Grid of the drawing, in SVG units.
pub const NODE_W: f64 = 180.0;
pub const NODE_H: f64 = 56.0;
const GAP_X: f64 = 80.0;
const GAP_Y: f64 = 24.0;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Placed {
    pub name: String,
    pub deps: Vec<String>,
    pub layer: usize,
    pub order: usize,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Placed>,
    /// `[parent, child]` pairs.
    pub edges: Vec<[String; 2]>,
    pub width: f64,
    pub height: f64,
    pub node_w: f64,
    pub node_h: f64,
}

/// The task names of a stored spec and their dependencies (unknown names
/// dropped): `tasks.<name>.depends_on`.
pub fn deps_of_spec(spec: &Value) -> BTreeMap<String, Vec<String>> {
    let tasks = spec["tasks"].as_object().cloned().unwrap_or_default();
    tasks
        .iter()
        .map(|(name, t)| {
            let deps = t["depends_on"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str())
                        .filter(|d| tasks.contains_key(*d))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), deps)
        })
        .collect()
}

/// Lays out `deps` (task → its parents). A cycle (which validation
/// forbids) cannot loop: a layer is at most the number of tasks.
pub fn layout(deps: &BTreeMap<String, Vec<String>>) -> Layout {
    let names: Vec<&String> = deps.keys().collect();
    let mut layer: BTreeMap<&str, usize> = names.iter().map(|n| (n.as_str(), 0)).collect();
    for _ in 0..names.len() {
        let mut changed = false;
        for (name, parents) in deps {
            let l = parents
                .iter()
                .filter_map(|p| layer.get(p.as_str()))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0)
                .min(names.len());
            if layer[name.as_str()] != l {
                layer.insert(name.as_str(), l);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = layer.values().copied().max().map_or(0, |m| m + 1);
    let mut layers: Vec<Vec<&str>> = vec![Vec::new(); depth];
    for (name, l) in &layer {
        layers[*l].push(name);
    }
    let children: BTreeMap<&str, Vec<&str>> = names
        .iter()
        .map(|n| {
            let kids = deps
                .iter()
                .filter(|(_, ps)| ps.contains(n))
                .map(|(c, _)| c.as_str())
                .collect();
            (n.as_str(), kids)
        })
        .collect();
    // Barycentre sweeps: down by parents, up by children.
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        let range: Vec<usize> = if down {
            (1..depth).collect()
        } else {
            (0..depth.saturating_sub(1)).rev().collect()
        };
        for l in range {
            let neighbour = if down { l - 1 } else { l + 1 };
            let pos: BTreeMap<&str, usize> = layers[neighbour]
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, i))
                .collect();
            let mut keyed: Vec<(f64, usize, &str)> = layers[l]
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let linked: Vec<usize> = if down {
                        deps[*n]
                            .iter()
                            .filter_map(|p| pos.get(p.as_str()))
                            .copied()
                            .collect()
                    } else {
                        children[n]
                            .iter()
                            .filter_map(|c| pos.get(c))
                            .copied()
                            .collect()
                    };
                    let key = if linked.is_empty() {
                        i as f64
                    } else {
                        linked.iter().sum::<usize>() as f64 / linked.len() as f64
                    };
                    (key, i, *n)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            layers[l] = keyed.into_iter().map(|(_, _, n)| n).collect();
        }
    }
    let tallest = layers.iter().map(Vec::len).max().unwrap_or(0);
    let height = tallest as f64 * (NODE_H + GAP_Y) + GAP_Y;
    let mut nodes = Vec::new();
    for (l, members) in layers.iter().enumerate() {
        // Each layer centred vertically.
        let offset = (height - members.len() as f64 * (NODE_H + GAP_Y) - GAP_Y) / 2.0;
        for (i, name) in members.iter().enumerate() {
            nodes.push(Placed {
                name: (*name).to_owned(),
                deps: deps[*name].clone(),
                layer: l,
                order: i,
                x: GAP_X / 2.0 + l as f64 * (NODE_W + GAP_X),
                y: offset + GAP_Y + i as f64 * (NODE_H + GAP_Y),
            });
        }
    }
    let edges = deps
        .iter()
        .flat_map(|(c, ps)| ps.iter().map(move |p| [p.clone(), c.clone()]))
        .collect();
    Layout {
        nodes,
        edges,
        width: depth as f64 * (NODE_W + GAP_X),
        height,
        node_w: NODE_W,
        node_h: NODE_H,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_go_on_the_layer_of_their_longest_path() {
        let spec = serde_json::json!({"tasks": {
            "extract": {}, "clean": {"depends_on": ["extract"]},
            "load": {"depends_on": ["clean", "extract", "nope"]},
        }});
        let l = layout(&deps_of_spec(&spec));
        let layer = |n: &str| l.nodes.iter().find(|p| p.name == n).unwrap().layer;
        assert_eq!((layer("extract"), layer("clean"), layer("load")), (0, 1, 2));
        assert_eq!(l.edges.len(), 3);
        assert!(l.width > 0.0 && l.height > 0.0);
    }
}
