#!/usr/bin/env node
/*
 * probe.js: drive a ZK terminal (real or emulated) with an independent
 * JavaScript client library and print what the library reports.
 *
 *   node probe.js <lib> <tcp|udp> <host> <port> <action...>
 *
 * <lib> is "node-zklib" (1.3.0) or "zkteco-js" (1.7.2). Actions run in order on
 * one connection:
 *
 *   info              getInfo(): user count, record count, record capacity
 *   users             getUsers()
 *   attendance        getAttendances()
 *   time              getTime()                    (zkteco-js only)
 *   settime:<iso>     setTime(new Date(<iso>))     (zkteco-js only; naive local time)
 *   serial | firmware | platform | devicename | mac | pin | faceon | workcode
 *                     the zkteco-js option getters (zkteco-js over TCP only)
 *   exec:<code>[:<ascii>]
 *                     executeCmd(code, ascii): the reply's code and data, as the
 *                     library hands them back (both libraries expose executeCmd)
 *   realtime:<n>:<ms> getRealTimeLogs(cb); once the device has answered the
 *                     REG_EVENT, print the line "PROBE_LISTENING <reply code>" on
 *                     stderr, then collect up to <n> events for at most <ms> ms:
 *                     {"registered": <reply code>, "events": [{userId, time}...]}
 *   disconnect        disconnect()
 *
 * Output: exactly ONE JSON object on stdout,
 *   {"ok": true, "lib": ..., "transport": ..., "results": {"<action>": value, ...}}
 * or, when an action throws (or the whole run exceeds PROBE_DEADLINE_MS),
 *   {"ok": false, "lib": ..., "transport": ..., "action": ..., "error": ..., "results": {...}}
 * with exit status 1 (2 for the deadline). Everything the libraries log goes to
 * stderr. Times are naive local times "YYYY-MM-DDTHH:MM:SS" (run with TZ=UTC so
 * that no local DST rule can bend a device time).
 *
 * Transport: both libraries' createSocket() try TCP first and fall back to UDP
 * only when TCP is refused (ECONNREFUSED). The emulator, like a real terminal,
 * listens on both, so "udp" performs the library's own fallback path directly:
 * the library's UDP class createSocket() + connect(), then connectionType = "udp",
 * after which every call goes through the library's public wrapper as usual.
 *
 * Both libraries leave timers and listeners behind (e.g. node-zklib never removes
 * its bulk-read data listener), so the probe always ends with process.exit().
 * They also append error logs to ./DDMMYYYY.err.log: run the probe from a
 * scratch directory (modules resolve from this file's folder, not the cwd).
 *
 * Environment:
 *   PROBE_LIB_TIMEOUT_MS     the timeout handed to the library (default 5000)
 *   PROBE_ACTION_TIMEOUT_MS  fail an action that takes longer than this (default: none)
 *   PROBE_DEADLINE_MS        fail the whole run after this long (default 25000)
 *   PROBE_TCP_DELIVERY       how TCP bytes reach the library's 'data' listeners:
 *     as-is      (default) exactly as the socket reads them
 *     per-frame  one complete ZK frame per 'data' event, each in its own turn of
 *                the event loop: a terminal whose frames arrive in separate
 *                segments that the client reads one by one
 *     coalesced  a buffered-read chunk's PREPARE_DATA, DATA and ACK_OK frames in ONE
 *                'data' event, as a client whose event loop was busy while they
 *                arrived reads them (other frames are delivered one per event)
 *   Both libraries parse at most one frame per 'data' event in their bulk-read
 *   code and ignore each chunk's trailing ACK_OK, so what a TCP bulk read does
 *   depends on how the frames fall into reads (coalesced: the read stalls;
 *   per-frame: the data is complete but the trailing ACK_OK is taken as the reply
 *   to the next command). The two fixed modes make either outcome reproducible;
 *   the bytes are never changed.
 */
'use strict'

const util = require('util')

// The libraries print progress ("ok tcp", "TCP connection successful") with
// console.log: keep stdout for the single JSON result.
for (const name of ['log', 'info', 'warn', 'error', 'debug']) {
  console[name] = (...args) => process.stderr.write(util.format(...args) + '\n')
}

const LISTENING_MARKER = 'PROBE_LISTENING'
const LIB_TIMEOUT_MS = Number(process.env.PROBE_LIB_TIMEOUT_MS || 5000)
const DEADLINE_MS = Number(process.env.PROBE_DEADLINE_MS || 25000)
const ACTION_TIMEOUT_MS = Number(process.env.PROBE_ACTION_TIMEOUT_MS || 0)
const TCP_DELIVERY = process.env.PROBE_TCP_DELIVERY || 'as-is'

const [libName, transport, host, portText, ...actions] = process.argv.slice(2)
const results = {}
let currentAction = 'connect'
let finished = false

function finish (payload, code) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(payload) + '\n', () => process.exit(code))
}

/** The message of an error, unwrapping the libraries' ZKError/ZkError wrappers. */
function describe (err) {
  const parts = []
  let e = err
  for (let depth = 0; e && depth < 6; depth++) {
    if (e.command) parts.push(String(e.command))
    if (e instanceof Error) {
      parts.push(e.message || String(e))
      break
    }
    if (e.err === undefined) {
      parts.push(typeof e === 'string' ? e : util.inspect(e))
      break
    }
    e = e.err
  }
  return parts.filter(Boolean).join(': ') || String(err)
}

function fail (err, code = 1) {
  finish({
    ok: false,
    lib: libName,
    transport,
    action: currentAction,
    error: describe(err),
    results
  }, code)
}

process.on('uncaughtException', (err) => fail(err))
process.on('unhandledRejection', (err) => fail(err))
setTimeout(() => fail(new Error(`probe deadline of ${DEADLINE_MS} ms exceeded`), 2), DEADLINE_MS)

const PREPARE_DATA = 1500
const DATA = 1501

/**
 * Re-slice what TCP sockets emit as 'data' at ZK frame boundaries (see
 * PROBE_TCP_DELIVERY). Installed on net.Socket before the library opens its socket;
 * bytes that do not start with the ZK TCP magic are passed on untouched.
 *
 * per-frame: every complete frame is emitted from its own turn of the event loop
 * (setImmediate), so the library's promise continuations run between two frames
 * exactly as they do between two separate socket reads; 'end' and 'close' queue
 * behind the frames still pending so that the order of events is kept.
 * coalesced: frames are emitted synchronously; PREPARE_DATA and DATA frames are
 * held and handed over together with the frame that follows them.
 */
function installTcpDelivery (mode) {
  if (mode === 'as-is') return
  if (mode !== 'per-frame' && mode !== 'coalesced') {
    throw new Error(`unknown PROBE_TCP_DELIVERY ${mode} (as-is, per-frame or coalesced)`)
  }
  const net = require('net')
  const emit = net.Socket.prototype.emit
  const state = new WeakMap()

  const stateOf = (sock) => {
    let st = state.get(sock)
    if (st === undefined) {
      st = { buf: Buffer.alloc(0), held: [], queue: [], draining: false }
      state.set(sock, st)
    }
    return st
  }

  const drain = (sock, st) => {
    const item = st.queue.shift()
    emit.call(sock, item.event, ...item.args)
    if (st.queue.length) setImmediate(drain, sock, st)
    else st.draining = false
  }

  const enqueue = (sock, st, event, args) => {
    st.queue.push({ event, args })
    if (!st.draining) {
      st.draining = true
      setImmediate(drain, sock, st)
    }
  }

  net.Socket.prototype.emit = function (event, ...args) {
    if (mode === 'per-frame' && (event === 'end' || event === 'close')) {
      const st = state.get(this)
      if (st !== undefined && st.queue.length) {
        enqueue(this, st, event, args)
        return true
      }
    }
    if (event !== 'data') return emit.call(this, event, ...args)
    const st = stateOf(this)
    st.buf = Buffer.concat([st.buf, args[0]])
    const frames = []
    while (st.buf.length >= 8) {
      if (st.buf.readUInt16LE(0) !== 0x5050 || st.buf.readUInt16LE(2) !== 0x7d82) {
        frames.push(st.buf) // not ZK framing: deliver as read
        st.buf = Buffer.alloc(0)
        break
      }
      const end = 8 + st.buf.readUInt32LE(4)
      if (st.buf.length < end) break
      frames.push(st.buf.subarray(0, end))
      st.buf = st.buf.subarray(end)
    }
    let handled = false
    for (const frame of frames) {
      if (mode === 'per-frame') {
        enqueue(this, st, 'data', [frame])
        handled = true
        continue
      }
      st.held.push(frame)
      const code = frame.length >= 10 ? frame.readUInt16LE(8) : 0
      if (code !== PREPARE_DATA && code !== DATA) {
        handled = emit.call(this, 'data', Buffer.concat(st.held)) || handled
        st.held = []
      }
    }
    return handled
  }
}

function pad (n, width = 2) {
  return String(n).padStart(width, '0')
}

/** A JS Date built from device fields (local-time constructor) as naive ISO text. */
function naive (date) {
  if (!(date instanceof Date)) date = new Date(date)
  if (Number.isNaN(date.getTime())) return null
  return `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
}

function errText (err) {
  return err ? describe(err) : null
}

/** The open connection: the library's wrapper object and its transport-level socket. */
function openLibrary () {
  const port = Number(portText)
  if (libName === 'node-zklib') {
    const ZKLib = require('node-zklib')
    const zk = new ZKLib(host, port, LIB_TIMEOUT_MS, 0)
    return { zk, udp: () => zk.zklibUdp, tcp: () => zk.zklibTcp }
  }
  if (libName === 'zkteco-js') {
    const ZktecoJs = require('zkteco-js')
    const zk = new ZktecoJs(host, port, LIB_TIMEOUT_MS, 0)
    return { zk, udp: () => zk.zudp, tcp: () => zk.ztcp }
  }
  throw new Error(`unknown library ${libName} (node-zklib or zkteco-js)`)
}

async function connect (lib) {
  if (transport === 'tcp') {
    await lib.zk.createSocket()
    if (lib.zk.connectionType !== 'tcp') throw new Error(`connected over ${lib.zk.connectionType}`)
    return
  }
  if (transport === 'udp') {
    // the library's own UDP fallback, taken directly (see the header comment)
    const udp = lib.udp()
    await udp.createSocket()
    await udp.connect()
    lib.zk.connectionType = 'udp'
    return
  }
  throw new Error(`unknown transport ${transport} (tcp or udp)`)
}

function normUser (u) {
  return {
    uid: u.uid,
    userId: u.userId === undefined ? null : String(u.userId),
    name: u.name === undefined ? null : u.name,
    role: u.role === undefined ? null : u.role,
    password: u.password === undefined ? null : u.password,
    cardno: u.cardno === undefined ? null : u.cardno
  }
}

function normRecord (r) {
  const userId = r.deviceUserId !== undefined ? r.deviceUserId : r.user_id
  const time = r.recordTime !== undefined ? r.recordTime : r.record_time
  return {
    userSn: r.userSn !== undefined ? r.userSn : (r.sn !== undefined ? r.sn : null),
    userId: userId === undefined ? null : String(userId),
    time: naive(time),
    type: r.type === undefined ? null : r.type,
    state: r.state === undefined ? null : r.state
  }
}

/** Resolve when the next reply to our own request (not an event) reaches the socket. */
function nextReply (lib) {
  return new Promise((resolve) => {
    if (lib.zk.connectionType === 'udp') {
      const sock = lib.udp().socket
      const onMessage = (msg) => {
        if (msg.length >= 8 && msg.readUInt16LE(0) !== 500) {
          sock.removeListener('message', onMessage)
          resolve(msg.readUInt16LE(0))
        }
      }
      sock.on('message', onMessage)
    } else {
      const sock = lib.tcp().socket
      let buf = Buffer.alloc(0)
      const onData = (chunk) => {
        buf = Buffer.concat([buf, chunk])
        while (buf.length >= 16) {
          const length = buf.readUInt32LE(4)
          if (buf.length < 8 + length) return
          const code = buf.readUInt16LE(8)
          buf = buf.subarray(8 + length)
          if (code !== 500) {
            sock.removeListener('data', onData)
            resolve(code)
            return
          }
        }
      }
      sock.on('data', onData)
    }
  })
}

async function realtime (lib, spec) {
  const [, countText, msText] = spec.split(':')
  const want = Number(countText || 1)
  const ms = Number(msText || 5000)
  const events = []
  let done
  const allIn = new Promise((resolve) => { done = resolve })
  await lib.zk.getRealTimeLogs((event) => {
    events.push({ userId: String(event.userId), time: naive(event.attTime) })
    if (events.length >= want) done()
  })
  // getRealTimeLogs does not wait for the device's answer to REG_EVENT; observe
  // it (after the library attached its own listener) so that the caller punches
  // only once the device has registered this session for events
  const code = await Promise.race([
    nextReply(lib),
    new Promise((resolve) => setTimeout(() => resolve(null), LIB_TIMEOUT_MS))
  ])
  process.stderr.write(`${LISTENING_MARKER} ${code}\n`)
  const timer = setTimeout(done, ms)
  await allIn
  clearTimeout(timer)
  return { registered: code, events }
}

const OPTION_GETTERS = {
  serial: 'getSerialNumber',
  firmware: 'getFirmware',
  platform: 'getPlatform',
  devicename: 'getDeviceName',
  mac: 'getMacAddress',
  pin: 'getPIN',
  faceon: 'getFaceOn',
  workcode: 'getWorkCode'
}

async function run (lib, action) {
  const zk = lib.zk
  const [verb] = action.split(':')
  switch (verb) {
    case 'info':
      return await zk.getInfo()
    case 'users': {
      const got = await zk.getUsers()
      return { users: got.data.map(normUser), err: errText(got.err) }
    }
    case 'attendance': {
      const got = await zk.getAttendances()
      return { records: got.data.map(normRecord), err: errText(got.err) }
    }
    case 'time':
      if (typeof zk.getTime !== 'function') throw new Error(`${libName} has no getTime()`)
      return naive(await zk.getTime())
    case 'settime': {
      if (typeof zk.setTime !== 'function') throw new Error(`${libName} has no setTime()`)
      await zk.setTime(new Date(action.slice('settime:'.length)))
      return true
    }
    case 'exec': {
      const [, codeText, ...rest] = action.split(':')
      const reply = await zk.executeCmd(Number(codeText), rest.join(':'))
      return {
        code: reply.length >= 2 ? reply.readUInt16LE(0) : null,
        data: reply.subarray(8).toString('hex')
      }
    }
    case 'realtime':
      return await realtime(lib, action)
    case 'disconnect':
      await zk.disconnect()
      return true
    default: {
      const getter = OPTION_GETTERS[verb]
      if (getter === undefined) throw new Error(`unknown action ${action}`)
      if (typeof zk[getter] !== 'function') throw new Error(`${libName} has no ${getter}()`)
      return await zk[getter]()
    }
  }
}

function withTimeout (promise, action) {
  if (!ACTION_TIMEOUT_MS) return promise
  let timer
  const expired = new Promise((resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${action} did not finish within ${ACTION_TIMEOUT_MS} ms`)),
      ACTION_TIMEOUT_MS)
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}

async function main () {
  if (!libName || !transport || !host || !portText) {
    throw new Error('usage: node probe.js <node-zklib|zkteco-js> <tcp|udp> <host> <port> <action...>')
  }
  installTcpDelivery(TCP_DELIVERY)
  const lib = openLibrary()
  await connect(lib)
  for (const action of actions) {
    currentAction = action
    let key = action
    for (let n = 2; key in results; n++) key = `${action}#${n}`
    results[key] = await withTimeout(run(lib, action), action)
  }
  finish({ ok: true, lib: libName, transport, results }, 0)
}

main().catch((err) => fail(err))
