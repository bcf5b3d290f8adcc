#!/usr/bin/env node
// Reference subject for Scripts/bench/bench.py: Node.js `cluster` serving the
// same response as Switchboard ("Handled by worker: <pid>").
//
// Usage:
//   NODE_CLUSTER_SCHED_POLICY=rr|none node node-cluster.js [--host H] [--port P] [--workers W]
//
// --port 0 (the default) lets the kernel pick a port; in cluster mode every
// worker gets the same port because the primary owns the listening handle.
// Once every worker has emitted 'listening', the primary prints exactly one
// line on stdout, in the same format as Switchboard:
//   listening on 127.0.0.1:<port> with <n> workers (node-rr)
// SIGTERM or SIGINT to the primary stops the workers and then the primary.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');

function option(name, envName, fallback) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}` && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  if (envName && process.env[envName] !== undefined && process.env[envName] !== '') {
    return process.env[envName];
  }
  return fallback;
}

function fail(message) {
  process.stderr.write(`node-cluster: ${message}\n`);
  process.exit(2);
}

const host = option('host', 'BENCH_HOST', '127.0.0.1');
const port = Number(option('port', 'BENCH_PORT', '0'));
const workers = Number(option('workers', 'BENCH_WORKERS', '2'));
const policyName = (process.env.NODE_CLUSTER_SCHED_POLICY || 'rr').toLowerCase();

if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port: ${port}`);
if (!Number.isInteger(workers) || workers < 1) fail(`bad worker count: ${workers}`);
if (policyName !== 'rr' && policyName !== 'none') {
  fail(`NODE_CLUSTER_SCHED_POLICY must be rr or none, got ${policyName}`);
}

if (cluster.isPrimary) {
  // Must be set before the first fork.
  cluster.schedulingPolicy = policyName === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;

  const listening = new Set();
  let announced = false;
  let stopping = false;

  cluster.on('listening', (worker, address) => {
    listening.add(worker.id);
    if (!announced && listening.size === workers) {
      announced = true;
      process.stdout.write(
        `listening on ${host}:${address.port} with ${workers} workers (node-${policyName})\n`);
    }
  });

  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      process.stderr.write(
        `node-cluster: worker ${worker.process.pid} exited (code ${code}, signal ${signal})\n`);
    }
    if (Object.keys(cluster.workers).length === 0) {
      process.exit(stopping ? 0 : 1);
    }
  });

  const stop = () => {
    if (stopping) return;
    stopping = true;
    const alive = Object.values(cluster.workers);
    if (alive.length === 0) process.exit(0);
    for (const w of alive) w.process.kill('SIGTERM');
    // Last resort: do not hang the benchmark.
    setTimeout(() => {
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
      process.exit(0);
    }, 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  for (let i = 0; i < workers; i++) {
    cluster.fork({ BENCH_HOST: host, BENCH_PORT: String(port) });
  }
} else {
  const body = `Handled by worker: ${process.pid}`;
  const length = String(Buffer.byteLength(body));
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': length });
    res.end(body);
  });
  server.listen(port, host);
  const quit = () => process.exit(0);
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
}
